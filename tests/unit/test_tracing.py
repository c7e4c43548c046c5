"""When tracing is on (the standard OTEL_* environment), and that it is off otherwise."""

from __future__ import annotations

import pytest

from jobtrigger import tracing


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_wanted_follows_the_standard_environment(environ: dict[str, str], on: bool) -> None:
    assert tracing.wanted(environ) is on


def test_off_by_default_costs_no_span() -> None:
    assert not tracing.enabled()
    assert tracing.start_occurrence(0.0, {"a": 1}) is None


def test_traceparent_of_an_in_memory_trace() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        import time

        t = tracing.start_occurrence(time.monotonic() - 0.5, {"jobtrigger.name": "t"})
        assert t is not None
        t.child("sync", time.monotonic() - 0.2, time.monotonic())
        t.end()
        root, child = sorted(exporter.get_finished_spans(), key=lambda s: s.name != "jobtrigger.occurrence")
        assert t.traceparent == f"00-{root.context.trace_id:032x}-{root.context.span_id:016x}-{t.traceparent[-2:]}"
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert root.end_time is not None and root.start_time is not None
        assert 0.45e9 < root.end_time - root.start_time < 5e9  # started at the event, not at the first span call
    finally:
        tracing.use(None)
