"""Thin JSON-over-HTTP access to the Kubernetes API.

Why not the generated typed APIs of kubernetes-asyncio: jobtrigger watches *any* kind by path, and decoding every
event into model classes only to hash a few fields wastes CPU. So the controller talks plain dicts over the
``ApiClient``'s authenticated aiohttp session (kubeconfig / in-cluster auth, TLS and token refresh all come from
kubernetes-asyncio) and keeps this layer to three verbs: ``request``, ``watch_lines`` and helpers on top.

Every request carries an explicit timeout: kubernetes-asyncio passes ``aiohttp.ClientTimeout()`` (no limit at all)
when none is given, and a watch must instead be bounded by a *read* timeout (inactivity), not a total one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
from kubernetes_asyncio import client, config

log = logging.getLogger(__name__)

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the API server (or a transport failure, status 0)."""

    def __init__(self, status: int, reason: str, body: JSON | None = None, verb: str = "", path: str = ""):
        self.status = status
        self.reason = reason
        self.body = body or {}
        self.verb = verb
        self.path = path
        message = self.body.get("message") or reason
        super().__init__(f"{verb} {path}: {status} {message}")

    @property
    def message(self) -> str:
        return str(self.body.get("message") or self.reason)

    @property
    def k8s_reason(self) -> str:
        """The Status.reason (``AlreadyExists``, ``NotFound``, ``Expired``...)."""
        return str(self.body.get("reason") or "")


def is_not_found(e: BaseException) -> bool:
    return isinstance(e, ApiError) and e.status == 404


def is_conflict(e: BaseException) -> bool:
    return isinstance(e, ApiError) and e.status == 409


def is_namespace_terminating(e: BaseException) -> bool:
    """The namespace is being deleted (Status cause ``NamespaceTerminating``): nothing new can be created there,
    and whatever lives in it is about to go; controllers treat it as "nothing to do", as client-go does."""
    if not isinstance(e, ApiError):
        return False
    causes = (e.body.get("details") or {}).get("causes") or []
    return any(c.get("reason") == "NamespaceTerminating" for c in causes)  # StatusCause.Type is "reason" in JSON


@dataclass(frozen=True)
class GVR:
    """Group/version/resource plus what discovery told us about the kind."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def base(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        p = self.base()
        if self.namespaced and namespace:
            p += f"/namespaces/{quote(namespace)}"
        p += f"/{self.resource}"
        if name:
            p += f"/{quote(name)}"
        if subresource:
            p += f"/{subresource}"
        return p


#: Called after every API request: (verb, resource path kind, HTTP status). Wired to Prometheus by the app.
RequestHook = Callable[[str, str, int], None]


class KubeClient:
    """Authenticated JSON requests and watch streams against one API server."""

    def __init__(self, api_client: client.ApiClient, *, request_timeout: float = 30.0):
        self.api_client = api_client
        self.request_timeout = request_timeout
        self.on_request: RequestHook | None = None
        self.user_agent = "jobtrigger"
        #: sent with every request (tests use ``Impersonate-User`` to run as a ServiceAccount)
        self.extra_headers: dict[str, str] = {}
        #: seconds this client may still act (a leader: the time its Lease is proven); every request's timeout is
        #: cut to it and none is sent at or past it, so a paused or partitioned leader cannot write after another
        #: replica may have taken over. None: no limit.
        self.deadline: Callable[[], float] | None = None
        _pin_environment(api_client)

    @classmethod
    async def from_config(cls, kubeconfig: str | None = None, *, max_connections: int = 1000) -> KubeClient:
        """In-cluster config when running in a pod, else the kubeconfig (``KUBECONFIG`` or the given path)."""
        cfg = client.Configuration()
        try:
            if kubeconfig:
                raise config.ConfigException("explicit kubeconfig")
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        # every watch holds one connection; the default pool of 100 would starve requests
        cfg.connection_pool_maxsize = max_connections
        return cls(client.ApiClient(configuration=cfg))

    async def close(self) -> None:
        await self.api_client.close()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        headers = {
            "Accept": "application/json",
            "Content-Type": content_type,
            "User-Agent": self.user_agent,
            **self.extra_headers,
        }
        rest = self.api_client.rest_client
        url = str(self.api_client.configuration.host) + path
        if query:
            url += "?" + urlencode([(k, v) for k, v in query.items() if v is not None])
        # straight to the ApiClient's session: its auth (token refresh included), TLS and proxy, without the
        # generated client's per-request deep walk of the body (sanitize_for_serialization) and regex checks
        args: dict[str, Any] = {"headers": headers, "timeout": timeout}
        if body is not None:
            args["data"] = json.dumps(body, separators=(",", ":")).encode()
        if rest.proxy:
            args["proxy"] = rest.proxy
        if rest.proxy_headers:
            args["proxy_headers"] = rest.proxy_headers
        if rest.server_hostname:
            args["server_hostname"] = rest.server_hostname
        try:
            await self.api_client.update_params_for_auth(headers, [], ["BearerToken"])
            resp: Any = await rest.pool_manager.request(method, url, **args)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self._count(method, path, 0)
            raise ApiError(0, f"{type(e).__name__}: {e}", verb=method, path=path) from e
        return resp  # type: ignore[no-any-return]

    def _count(self, method: str, path: str, status: int) -> None:
        if self.on_request is not None:
            self.on_request(method, _path_kind(path), status)

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> JSON:
        """One request; returns the decoded JSON body or raises :class:`ApiError`."""
        raw = await self._raw(method, path, query=query, body=body, content_type=content_type, timeout=timeout)
        return _decode(raw) if raw else {}

    async def _raw(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> bytes:
        """The body of a 2xx answer; anything else raises :class:`ApiError` (with the Status decoded)."""
        total = timeout or self.request_timeout
        if self.deadline is not None:
            left = self.deadline()
            if left <= 0:
                self._count(method, path, 0)
                raise ApiError(0, "not sent: the leader lease is no longer proven", verb=method, path=path)
            total = min(total, left)
        to = aiohttp.ClientTimeout(total=total)
        resp = await self._send(method, path, query=query, body=body, content_type=content_type, timeout=to)
        try:
            async with resp:
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self._count(method, path, 0)
            raise ApiError(0, f"{type(e).__name__}: {e}", verb=method, path=path) from e
        self._count(method, path, resp.status)
        if not 200 <= resp.status <= 299:
            raise ApiError(resp.status, resp.reason or "", _decode(raw) if raw else {}, verb=method, path=path)
        return raw

    async def get_text(self, path: str, *, timeout: float | None = None, **query: Any) -> str:
        """A GET whose answer is text, not JSON (pod logs)."""
        return (await self._raw("GET", path, query=query or None, timeout=timeout)).decode("utf-8", "replace")

    async def get(self, path: str, **query: Any) -> JSON:
        return await self.request("GET", path, query=query or None)

    async def create(self, path: str, body: JSON, **query: Any) -> JSON:
        return await self.request("POST", path, body=body, query=query or None)

    async def merge_patch(self, path: str, body: JSON) -> JSON:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def json_patch(self, path: str, ops: list[JSON]) -> JSON:
        """RFC 6902 patch; a ``test`` op makes it conditional on a field's value (not on the whole object)."""
        return await self.request("PATCH", path, body=ops, content_type=JSON_PATCH)

    async def delete(self, path: str, *, propagation: str = "Background") -> JSON:
        return await self.request(
            "DELETE",
            path,
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
        )

    async def watch_lines(self, path: str, query: dict[str, Any], *, inactivity_timeout: float) -> AsyncIterator[JSON]:
        """Stream decoded watch events. Ends when the server closes the stream; raises :class:`ApiError` on an
        HTTP error or when nothing (not even a bookmark) arrived for ``inactivity_timeout`` seconds."""
        to = aiohttp.ClientTimeout(total=None, connect=self.request_timeout, sock_read=inactivity_timeout)
        resp = await self._send("GET", path, query={**query, "watch": "true"}, timeout=to)
        async with resp:
            if not 200 <= resp.status <= 299:
                raw = await resp.read()
                self._count("WATCH", path, resp.status)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                raise ApiError(resp.status, resp.reason or "", body, verb="WATCH", path=path)
            self._count("WATCH", path, resp.status)
            try:
                async for line in resp.content:
                    if line.strip():
                        yield json.loads(line)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                raise ApiError(0, f"watch stream broke: {type(e).__name__}: {e}", verb="WATCH", path=path) from e


def _pin_environment(api_client: client.ApiClient) -> None:
    """Read the proxy environment once instead of on every request.

    kubernetes-asyncio opens its aiohttp session with ``trust_env=True``, so aiohttp reads ``*_PROXY``, ``NO_PROXY``
    and ``~/.netrc`` (a file read handed to a thread) for *every* request: 15 % of the controller's CPU at
    100 changes/s in the profile of docs/benchmarks.md. The answer cannot change while the process runs, so it is
    taken here, once, and the session stops looking. A proxy from the kubeconfig (``proxy-url``) wins, as before.
    """
    rest = getattr(api_client, "rest_client", None)
    session = getattr(rest, "pool_manager", None)
    if rest is None or not isinstance(session, aiohttp.ClientSession) or not session.trust_env:
        return
    url = urlsplit(str(api_client.configuration.host))
    if not rest.proxy and url.hostname and not proxy_bypass(url.hostname):
        rest.proxy = getproxies().get(url.scheme) or None
    session._trust_env = False  # no public setter; tests/unit/test_client.py checks the attribute still works


def _decode(raw: bytes) -> JSON:
    try:
        data = json.loads(raw)
    except ValueError:
        return {"message": raw[:500].decode("utf-8", "replace")}
    return data if isinstance(data, dict) else {"items": data}


def _path_kind(path: str) -> str:
    """Collapse a request path to its resource type (for metrics labels with bounded cardinality)."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    # /api/v1/namespaces/ns/configmaps/name -> configmaps ; /apis/g/v/jobs -> jobs
    if parts and parts[0] == "api":
        parts = parts[2:]
    elif parts and parts[0] == "apis":
        parts = parts[3:]
    if len(parts) >= 2 and parts[0] == "namespaces":
        parts = parts[2:] if len(parts) > 2 else ["namespaces"]
    if not parts:
        return "discovery"
    return parts[0] + ("/" + parts[2] if len(parts) > 2 else "")
