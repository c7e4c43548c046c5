"""Run the benchmarks in sequence: ``python -m benchmarks``.

Each benchmark runs as its own process (``python -m benchmarks.<name> [args]``, from the repository root), one after
the other; the run stops at the first one that exits non-zero, and exits non-zero itself.

- ``latency``, ``curve`` (and docs/img/curve.png), ``request_cost``, ``idle``, ``scale``, ``kwok_pods``, ``shards``
  write their own section of docs/benchmarks.md;
- ``compare`` and ``reliability`` print a markdown section: this runner puts it into docs/benchmarks.md under its own
  ``## `` heading (replacing a section with the same heading);
- ``reliability`` runs its long variant: ``--kills 10 --changes 200`` and a ``--soak 600`` (seconds).

After a run that is not ``--quick``, docs/benchmarks.md starts with a short header: the machine (``nproc``,
memory, CPU model), Python, the kube-apiserver version, and the date and sections of the run.

    .venv/bin/python -m benchmarks                       # everything (70+ min); updates docs/benchmarks.md
    .venv/bin/python -m benchmarks --only latency,idle   # a subset, in the order given
    .venv/bin/python -m benchmarks --quick               # each with --quick: a smoke check, writes nothing
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
HEADER_BEGIN = "<!-- machine header: written by `python -m benchmarks` -->"
HEADER_END = "<!-- end of machine header -->"


def full_args(soak: float) -> dict[str, list[str]]:
    """Arguments of each benchmark in a full run (the order is the run's order)."""
    return {
        "latency": [],
        "curve": [],
        "request_cost": [],
        "idle": [],
        "scale": [],
        "kwok_pods": [],
        "shards": [],
        "compare": [],
        "reliability": ["--kills", "10", "--changes", "200", "--soak", f"{soak:g}"],
        "tracing_cost": [],  # prints; its figures are in docs/benchmarks.md "Tracing cost" (CPU time, load-proof)
    }


#: benchmarks that print their markdown section instead of writing docs/benchmarks.md themselves
PRINTS_SECTION = frozenset({"compare", "reliability"})


# ------------------------------------------------------------------------------------------------ running


def run_one(name: str, args: list[str], capture: bool) -> tuple[int, str]:
    """Run ``python -m benchmarks.<name> args``; stderr and stdout go through (stdout is also returned if
    ``capture``). Ctrl-C lets the benchmark stop its control plane and controller before it is killed."""
    cmd = [sys.executable, "-m", f"benchmarks.{name}", *args]
    print(f"\n=== {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE if capture else None, text=True)
    out: list[str] = []
    try:
        if proc.stdout is not None:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                out.append(line)
        return proc.wait(), "".join(out)
    except KeyboardInterrupt:
        # the terminal sent SIGINT to the child too; give it time to clean up, then insist
        for sig, grace in ((None, 60), (signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            if sig is not None:
                proc.send_signal(sig)
            try:
                proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        raise


def fmt_duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


# ------------------------------------------------------------------------------------------------ docs


def section_of(stdout: str) -> str | None:
    """The markdown section a benchmark printed: from its first ``## `` line to the end."""
    m = re.search(r"^## .*", stdout, re.M | re.S)
    return m.group(0).strip() if m else None


def put_section(doc: str, section: str) -> str:
    """``doc`` with ``section`` replacing the section of the same ``## `` heading (or appended)."""
    heading = section.splitlines()[0]
    doc = re.sub(rf"\n{re.escape(heading)}\n.*?(?=\n## |\Z)", "", doc, flags=re.S)
    return doc.rstrip() + "\n\n" + section + "\n"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB memory"
    except OSError:
        pass
    return "memory unknown"


def nproc() -> str:
    exe = shutil.which("nproc")
    if exe:
        out = subprocess.run([exe], capture_output=True, text=True, check=False).stdout.strip()
        if out.isdigit():
            return out
    return str(len(os.sched_getaffinity(0)))


def apiserver_version() -> str:
    """Version of the kube-apiserver binary the benchmarks start (envtest; $KUBEBUILDER_ASSETS is honoured)."""
    try:
        from jobtrigger.envtest import find_binaries

        binary = find_binaries(build=False).kube_apiserver
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
        m = re.search(r"v\d+\.\d+\.\d+\S*", out.stdout + out.stderr)
        return m.group(0) if m else "unknown version"
    except Exception as e:  # the header must not fail the run
        return f"unknown version ({type(e).__name__})"


def header(started: datetime, names: list[str], all_names: list[str], seconds: float, load: float) -> str:
    which = "all sections" if names == all_names else "sections " + ", ".join(names) + " (others are older)"
    return "\n".join(
        [
            HEADER_BEGIN,
            f"Machine: {nproc()} CPUs (`nproc`), {memory()}, {cpu_model()}; Linux {platform.release()} "
            f"{platform.machine()}; Python {platform.python_version()}; kube-apiserver {apiserver_version()} with "
            "etcd (envtest binaries, on the same machine). Load average at start "
            f"{load:.2f}.",
            "",
            f"Last run: {started:%Y-%m-%d %H:%M} UTC, `python -m benchmarks` ({which}; {fmt_duration(seconds)}).",
            HEADER_END,
        ]
    )


def put_header(doc: str, head: str) -> str:
    if HEADER_BEGIN in doc and HEADER_END in doc:
        a, b = doc.index(HEADER_BEGIN), doc.index(HEADER_END) + len(HEADER_END)
        return doc[:a] + head + doc[b:]
    if doc.startswith("# "):
        title, _, rest = doc.partition("\n")
        return f"{title}\n\n{head}\n\n{rest.lstrip()}"
    return f"# Benchmarks\n\n{head}\n\n{doc.lstrip()}"


# ------------------------------------------------------------------------------------------------ main


def main() -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="pass --quick to each benchmark; write nothing")
    p.add_argument("--only", default="", help="comma-separated subset, run in the order given")
    p.add_argument("--soak", type=float, default=600, help="reliability soak seconds in a full run (default 600)")
    args = p.parse_args()

    plan = full_args(args.soak)
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(plan)
    unknown = [n for n in names if n not in plan]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(plan)})")

    started, t_start, load = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    timings: list[tuple[str, float, str]] = []
    failed = ""
    try:
        for name in names:
            bench_args = ["--quick"] if args.quick else plan[name]
            capture = name in PRINTS_SECTION
            t0 = time.perf_counter()
            rc, stdout = run_one(name, bench_args, capture)
            dt = time.perf_counter() - t0
            timings.append((name, dt, "ok" if rc == 0 else f"exit {rc}"))
            print(f"=== {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {fmt_duration(dt)}", file=sys.stderr)
            if rc != 0:
                failed = name
                break
            if capture and not args.quick:
                section = section_of(stdout)
                if section is None:
                    failed = name
                    timings[-1] = (name, dt, "no markdown section in its output")
                    break
                doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
                DOC.write_text(put_section(doc, section))
    except KeyboardInterrupt:
        failed = "interrupted"
    total = time.perf_counter() - t_start

    done = [name for name, _, status in timings if status == "ok"]
    if not args.quick and done and DOC.exists():
        DOC.write_text(put_header(DOC.read_text(), header(started, done, list(plan), total, load)))

    print("\n=== timings", file=sys.stderr)
    for name, dt, status in timings:
        print(f"  {name:<12} {fmt_duration(dt):>9}  {status}", file=sys.stderr)
    skipped = names[len(timings) :]
    if skipped:
        print(f"  not run: {', '.join(skipped)}", file=sys.stderr)
    print(f"  {'total':<12} {fmt_duration(total):>9}", file=sys.stderr)
    if not args.quick and done:
        print(f"docs: {DOC} updated ({', '.join(done)})", file=sys.stderr)
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 130 if failed == "interrupted" else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
