"""Resolve ``apiVersion`` + ``kind`` to a REST resource through API discovery.

One GET of ``/api/v1`` or ``/apis/<group>/<version>`` per group-version, cached. A miss is re-fetched (at most
once per ``refresh_after`` seconds) so a CRD installed after the JobTrigger is found on a later retry; a kind
that stays unknown becomes a clear status error ("resource kind does not exist") on the JobTrigger.
"""

from __future__ import annotations

import time

from jobtrigger.kube.client import GVR, ApiError, KubeClient


class UnknownKind(Exception):
    """The API server does not serve this apiVersion/kind."""


class Discovery:
    def __init__(self, kube: KubeClient, *, refresh_after: float = 10.0):
        self.kube = kube
        self.refresh_after = refresh_after
        self._groups: dict[str, tuple[float, dict[str, GVR]]] = {}

    async def _fetch(self, api_version: str) -> dict[str, GVR]:
        group, _, version = api_version.rpartition("/")
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            doc = await self.kube.get(path)
        except ApiError as e:
            if e.status == 404:
                return {}
            raise
        kinds: dict[str, GVR] = {}
        for res in doc.get("resources", []):
            name = res.get("name", "")
            if "/" in name:  # subresource
                continue
            kinds[res["kind"]] = GVR(group, version, name, res["kind"], bool(res.get("namespaced")))
        return kinds

    async def resolve(self, api_version: str, kind: str) -> GVR:
        """Return the resource for ``kind`` or raise :class:`UnknownKind`."""
        now = time.monotonic()
        cached = self._groups.get(api_version)
        if cached is None or (kind not in cached[1] and now - cached[0] > self.refresh_after):
            cached = (now, await self._fetch(api_version))
            self._groups[api_version] = cached
        gvr = cached[1].get(kind)
        if gvr is None:
            if not cached[1]:
                raise UnknownKind(f"apiVersion {api_version!r} is not served by the API server")
            raise UnknownKind(f"resource kind {kind!r} does not exist in {api_version!r}")
        return gvr
