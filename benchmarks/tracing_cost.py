"""CPU per occurrence of jobtrigger's OpenTelemetry tracing (docs/tracing.md): off (the one check) vs on (five spans,
the traceparent, and the OTLP/HTTP export through the BatchSpanProcessor to a receiver on loopback, protobuf encoding
and the exporter thread included). ``time.process_time()`` counts this process's CPU only, so the figure does not
depend on what else the machine is doing.

Run: ``.venv/bin/python -m benchmarks.tracing_cost`` (prints; writes nothing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from benchmarks.common import free_port
from jobtrigger import tracing


class _Receiver(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP trace exports (an empty ExportTraceServiceResponse is an empty body)."""

    spans_bytes = 0

    def do_POST(self) -> None:
        _Receiver.spans_bytes += len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def occurrence(i: int) -> None:
    """What gate.create_job and the status write do for one occurrence when tracing is on."""
    t = tracing.start_occurrence(
        time.monotonic() - 0.01,
        {
            "k8s.namespace.name": "ns",
            "jobtrigger.name": f"t{i}",
            "jobtrigger.trigger": "resources",
            "jobtrigger.occurrence": f"resources/{i}/abc",
            "jobtrigger.reason": "ConfigMap/ns/cfg updated (data)",
        },
    )
    if t is None:
        return
    t.child("queue.wait", time.monotonic() - 0.01, time.monotonic() - 0.005)
    t.child("sync", time.monotonic() - 0.005, time.monotonic())
    _ = t.traceparent
    span = t.child("job.create", time.monotonic(), **{"k8s.job.name": f"t{i}-x"})
    span.set_attribute("jobtrigger.job.created", True)
    span.end()
    t.root.set_attribute("k8s.job.name", f"t{i}-x")
    t.child("status.write", time.monotonic(), time.monotonic())
    t.end()


def per_occurrence(n: int, flush: bool) -> float:
    c0 = time.process_time()
    for i in range(n):
        occurrence(i)
    if flush and tracing._provider is not None:
        tracing._provider.force_flush()  # the export belongs to the cost
    return (time.process_time() - c0) / n


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--occurrences", type=int, default=2000, help="per measurement (keep it under the span queue)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="a few occurrences; check it runs")
    args = p.parse_args()
    if args.quick:
        args.occurrences, args.repeats = 50, 1
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    off = [per_occurrence(args.occurrences, flush=False) for _ in range(args.repeats)]
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"http://127.0.0.1:{port}/v1/traces"
    if not tracing.setup_from_env():
        raise SystemExit("tracing did not turn on: pip install 'jobtrigger[otel]'")
    on = [per_occurrence(args.occurrences, flush=True) for _ in range(args.repeats)]
    tracing.shutdown()
    server.shutdown()

    def fmt(v: list[float]) -> str:
        return f"min {min(v) * 1e6:.1f} / median {statistics.median(v) * 1e6:.1f} / max {max(v) * 1e6:.1f} µs"

    print(f"tracing off: {fmt(off)} CPU per occurrence")
    print(f"tracing on:  {fmt(on)} CPU per occurrence (5 spans, exported over OTLP/HTTP)")
    print(f"exported: {_Receiver.spans_bytes} bytes of protobuf")
    return 0 if _Receiver.spans_bytes > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
