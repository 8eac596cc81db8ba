"""Run every ``bench/bench_*.py`` and collect their markdown sections into ``bench/RESULTS.md``.

Each benchmark prints one markdown section on stdout (progress goes to stderr) and exits 0. This runner starts
the shared Elasticsearch first when it is not running (``scripts/elasticsearch.sh start``), runs the
benchmarks one after another (they share two cores; running them side by side would measure each other),
and writes the machine, the date, each command with its wall time, and each section.

    python bench/run.py                  # full runs (make bench)
    python bench/run.py --quick          # short runs, passed through to every benchmark
    python bench/run.py --only sink      # just bench_sink.py; other sections of RESULTS.md are kept
    python bench/run.py --only sink -- --runs 1   # arguments after -- go to every benchmark run
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "RESULTS.md"


@dataclass
class BenchRun:
    script: Path
    command: list[str]
    seconds: float
    returncode: int
    section: str
    stderr_tail: str
    load: tuple[float, float, float]  # load average when it started: other work moves absolute figures


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def ensure_elasticsearch() -> tuple[str, str]:
    """(url, version) of the cluster the benchmarks use: ``ES_URL``, or the shared local node (started if need be)."""
    url = os.environ.get("ES_URL", "").rstrip("/")
    if not url:
        script = REPO / "scripts" / "elasticsearch.sh"
        done = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(
                "bench/run.py: cannot start Elasticsearch (scripts/elasticsearch.sh start failed)"
            )
        url = done.stdout.strip().splitlines()[-1]
    from elasticsearch import Elasticsearch

    with Elasticsearch(url) as client:
        nodes = client.nodes.info(node_id="_local")["nodes"]
        version = next(iter(nodes.values()))["version"]
    return url, version


def machine_lines(es_url: str, es_version: str) -> list[str]:
    uname = platform.uname()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} cores; memory {_memory_gib()}",
        f"- kernel: {uname.system} {uname.release}; Python {platform.python_version()}",
        f"- Elasticsearch {es_version} at {es_url}",
        f"- load average when the run started (1/5/15 min): {load}",
    ]


def run_one(script: Path, extra: list[str], env: dict[str, str], index: int, total: int) -> BenchRun:
    command = [sys.executable, str(script.relative_to(REPO)), *extra]
    print(f"[{index}/{total}] {' '.join(command[1:])} ...", file=sys.stderr, flush=True)
    load = os.getloadavg()
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    tail: list[str] = []
    assert process.stderr is not None and process.stdout is not None
    stdout_parts: list[str] = []
    reader = threading.Thread(target=lambda: stdout_parts.append(process.stdout.read()))  # no pipe deadlock
    reader.start()
    for line in process.stderr:  # benchmarks report progress on stderr: show it live, keep the end for errors
        sys.stderr.write(f"    {line}")
        tail = [*tail[-19:], line]
    reader.join()
    stdout = "".join(stdout_parts)
    returncode = process.wait()
    seconds = time.monotonic() - started
    state = "done" if returncode == 0 else f"FAILED (exit {returncode})"
    print(f"[{index}/{total}] {script.name} {state} in {seconds:.0f} s", file=sys.stderr, flush=True)
    return BenchRun(script, command, seconds, returncode, stdout.strip(), "".join(tail), load)


def _block(run: BenchRun) -> str:
    """One benchmark's part of RESULTS.md, between markers so a later ``--only`` run can keep it."""
    command = shlex.join(["python", *run.command[1:]])
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    lines = [
        f"<!-- begin {run.script.name} -->",
        f"`{command}`: {run.seconds:.0f} s, exit {run.returncode}, {when}, load average at its start "
        + " / ".join(f"{x:.1f}" for x in run.load)
        + f" on {os.cpu_count()} cores",
        "",
    ]
    if run.returncode == 0 and run.section:
        lines.append(run.section)
    else:
        lines += [
            f"## {run.script.name}: failed (exit {run.returncode})",
            "",
            "```",
            run.stderr_tail.rstrip(),
            "```",
        ]
    return "\n".join([*lines, f"<!-- end {run.script.name} -->"])


def earlier_blocks(path: Path) -> dict[str, str]:
    """Blocks of the previous RESULTS.md by script name (kept for benchmarks this run skips)."""
    if not path.exists():
        return {}
    found = re.findall(r"(<!-- begin (\S+) -->.*?<!-- end \2 -->)", path.read_text(), flags=re.DOTALL)
    return {name: block for block, name in found}


def render(blocks: list[str], header: list[str], quick: bool) -> str:
    lines = [
        "# flowsink benchmark results",
        "",
        f"Written by `python bench/run.py{' --quick' if quick else ''}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Medians of repeated runs; ratios are against a peer measured in the"
        " same run on the same machine (other work on the machine moves absolute figures, much less the ratios).",
        "Each section starts with the command that produced it and when.",
        "",
        "## Machine",
        "",
        *header,
        "",
    ]
    for block in blocks:
        lines += [block, ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Run every bench/bench_*.py; write bench/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", action="append", default=[], help="run benchmarks whose name contains this")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument("extra", nargs="*", help="after --: arguments for every benchmark (e.g. -- --runs 1)")
    args = parser.parse_args()
    extra = (["--quick"] if args.quick else []) + args.extra

    scripts = sorted(BENCH.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if any(word in s.stem for word in args.only)]
    if not scripts:
        print("bench/run.py: no benchmark matched", file=sys.stderr)
        return 1
    es_url, es_version = ensure_elasticsearch()
    header = machine_lines(es_url, es_version)
    env = dict(os.environ, ES_URL=es_url, PYTHONUNBUFFERED="1")
    runs = [run_one(script, extra, env, n, len(scripts)) for n, script in enumerate(scripts, 1)]
    fresh = {run.script.name: _block(run) for run in runs}
    with open(args.output, "a+", encoding="utf-8") as out:
        fcntl.flock(out, fcntl.LOCK_EX)  # two runs finishing together must not drop each other's sections
        kept = earlier_blocks(args.output)  # read now, not at the start: others may have written it meanwhile
        names = sorted(set(fresh) | ({p.name for p in BENCH.glob("bench_*.py")} & set(kept)))
        text = render([fresh.get(name) or kept[name] for name in names], header, args.quick)
        out.seek(0)
        out.truncate()
        out.write(text + "\n")
    print(text)
    print(f"\nwritten to {args.output}", file=sys.stderr)
    return 0 if all(run.returncode == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
