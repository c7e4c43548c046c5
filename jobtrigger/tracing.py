"""OpenTelemetry traces: one trace per occurrence, from the watch event to the Job, continued inside the Job.

Optional (``pip install jobtrigger[otel]``) and off unless the standard ``OTEL_*`` environment asks for traces
(``OTEL_TRACES_EXPORTER`` other than ``none``, or an ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``); the exporter is
OTLP/HTTP and reads the rest of the ``OTEL_*`` variables itself. When off, nothing of OpenTelemetry is imported and
a Job costs one ``None`` check.

A trace: the root span ``jobtrigger.occurrence`` starts when the watch event that led to the sync arrived (or when
the sync started, for timers and restarts) and ends when the sync's status write is done; its children are
``queue.wait`` (event → a worker took the key), ``sync`` (the evaluation up to the Job) and ``job.create`` (the API
call). The root span's W3C ``traceparent`` is written onto the Job (annotation ``jobtrigger.dev/traceparent``) and
into its containers' environment (``TRACEPARENT``), so the Job's own work can join the same trace.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

_tracer: Any = None  # opentelemetry.trace.Tracer while tracing is on
_provider: Any = None


def enabled() -> bool:
    return _tracer is not None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard OTEL_* environment asks for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "")
    if exporter:
        return exporter != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup_from_env() -> bool:
    """Turn tracing on if the environment asks for it and the SDK is installed; returns whether it is on."""
    if not wanted():
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_* asks for traces but the OpenTelemetry SDK is missing: pip install 'jobtrigger[otel]'")
        return False
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "jobtrigger"})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use(provider)
    log.info("tracing on", extra={"exporter": "otlp/http"})
    return True


def use(provider: Any) -> None:
    """Trace with this TracerProvider (tests give one with their own exporter); None turns tracing off."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("jobtrigger") if provider is not None else None


def shutdown() -> None:
    """Flush what is buffered (SIGTERM); the controller calls it on the way out."""
    if _provider is not None:
        _provider.shutdown()
    use(None)


def wall_ns(monotonic: float) -> int:
    """A ``time.monotonic()`` reading as wall-clock nanoseconds (span timestamps are wall clock)."""
    return time.time_ns() - int((time.monotonic() - monotonic) * 1e9)


class OccurrenceTrace:
    """The open trace of one occurrence (see the module docstring)."""

    def __init__(self, root: Any):
        self.root = root

    @property
    def traceparent(self) -> str:
        ctx = self.root.get_span_context()
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"

    @property
    def trace_id(self) -> str:
        return f"{self.root.get_span_context().trace_id:032x}"

    def child(self, name: str, start: float, end: float | None = None, **attributes: Any) -> Any:
        """A child span from monotonic ``start`` to ``end`` (None: left open, the caller ends it)."""
        from opentelemetry import trace

        span = _tracer.start_span(
            name, context=trace.set_span_in_context(self.root), start_time=wall_ns(start), attributes=attributes
        )
        if end is not None:
            span.end(end_time=wall_ns(end))
        return span

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            self.root.record_exception(error)
            self.root.set_status(Status(StatusCode.ERROR, str(error)))
        self.root.end()


def start_occurrence(start: float, attributes: Mapping[str, Any]) -> OccurrenceTrace | None:
    """Open the trace of an occurrence that started at monotonic ``start``; None while tracing is off."""
    if _tracer is None:
        return None
    from opentelemetry.context import Context

    root = _tracer.start_span(
        "jobtrigger.occurrence", context=Context(), start_time=wall_ns(start), attributes=dict(attributes)
    )
    return OccurrenceTrace(root)
