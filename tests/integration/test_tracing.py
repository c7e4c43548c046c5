"""OpenTelemetry traces (issue #11, item 4): a real `jobtrigger controller` process with the standard OTEL_*
environment exports one trace per occurrence over OTLP/HTTP to a receiver in the test (the protobuf the OpenTelemetry
Collector would get), and the Job carries the trace's `traceparent` (annotation and TRACEPARENT in its containers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from benchmarks.common import controller_argv
from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import (
    create_cm,
    create_jt,
    free_port,
    patch_cm,
    wait_for,
    wait_jobs,
    wait_ready,
)


class OtlpReceiver:
    """The OTLP/HTTP traces endpoint (POST /v1/traces, protobuf), keeping every span it receives."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def _traces(self, request: web.Request) -> web.Response:
        req = ExportTraceServiceRequest()
        req.ParseFromString(await request.read())
        for rs in req.resource_spans:
            service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    attrs = {a.key: _value(a.value) for a in sp.attributes}
                    self.spans.append(
                        {
                            "service": service,
                            "name": sp.name,
                            "trace_id": sp.trace_id.hex(),
                            "span_id": sp.span_id.hex(),
                            "parent": sp.parent_span_id.hex(),
                            "start": sp.start_time_unix_nano,
                            "end": sp.end_time_unix_nano,
                            "attributes": attrs,
                        }
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


async def test_one_trace_per_occurrence_reaches_an_otlp_receiver_and_the_job(
    kube: KubeClient, kubeconfig: str, namespace: str
) -> None:
    receiver = OtlpReceiver()
    await receiver.start()
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{receiver.port}/v1/traces",
        "OTEL_SERVICE_NAME": "jobtrigger-test",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    proc = await asyncio.create_subprocess_exec(
        *controller_argv(kubeconfig, namespace, free_port()),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await create_cm(kube, namespace, "cfg", {"a": "1"})
        watch = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg", "fields": ["data"]}]
        await create_jt(kube, namespace, "t", {"resources": {"cooldown": "0s", "watch": watch}})
        await wait_ready(kube, namespace, "t")
        await patch_cm(kube, namespace, "cfg", {"data": {"a": "2"}})
        job = (await wait_jobs(kube, namespace, "t", 1))[0]
        traceparent = job["metadata"]["annotations"]["jobtrigger.dev/traceparent"]
        version, trace_id, span_id, flags = traceparent.split("-")
        assert (version, len(trace_id), len(span_id)) == ("00", 32, 16)
        assert int(flags, 16) & 0x01  # sampled (0x02, "random trace id", is W3C Trace Context level 2)
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "TRACEPARENT", "value": traceparent} in container["env"]

        async def whole_trace() -> list[dict[str, Any]] | None:
            spans = [s for s in receiver.spans if s["trace_id"] == trace_id]
            names = {s["name"] for s in spans}
            return spans if {"jobtrigger.occurrence", "sync", "job.create", "status.write"} <= names else None

        spans = await wait_for(whole_trace, "the occurrence's spans at the receiver", 20)
        by_name = {s["name"]: s for s in spans}
        root = by_name["jobtrigger.occurrence"]
        assert root["span_id"] == span_id and root["parent"] == "" and root["service"] == "jobtrigger-test"
        assert root["attributes"]["jobtrigger.name"] == "t"
        assert root["attributes"]["k8s.namespace.name"] == namespace
        assert root["attributes"]["jobtrigger.trigger"] == "resources"
        assert root["attributes"]["k8s.job.name"] == job["metadata"]["name"]
        assert f"ConfigMap/{namespace}/cfg" in root["attributes"]["jobtrigger.objects"]
        assert by_name["job.create"]["attributes"]["jobtrigger.job.created"] is True
        for name in ("queue.wait", "sync", "job.create", "status.write"):
            if name in by_name:  # queue.wait only when a watch event led to the sync (it did here)
                child = by_name[name]
                assert child["parent"] == span_id, name
                assert root["start"] <= child["start"] <= child["end"] <= root["end"], name
        assert "queue.wait" in by_name
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        await receiver.stop()
