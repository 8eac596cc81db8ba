"""Accuracy of the flows API: send random rows through ``POST /flows``, keep the exact truth, and compare every
hour's ``GET /flows?hour=N`` with it.

Rows use a namespace (a random prefix on every app name) so that the check can run against an API that holds
other data: only keys of its own namespace are compared. Each batch carries an ``Idempotency-Key``; a batch is
retried with the same key after a timeout, 429 or 5xx, so a retry can never count rows twice (if the API keeps
its promise, which is what this checks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Key = tuple[str, str, str]
MAX_INT64 = (1 << 63) - 1

EXAMPLES = """\
examples:
  # 100000 rows over 24 hours and 500 (src_app, dest_app, vpc_id) keys against a local node
  python scripts/check_api_accuracy.py --url http://127.0.0.1:8080 --token secret --rows 100000 --hours 24 \\
      --keys 500
  # small and quick, no auth, values up to 2^63-1 in 5% of rows (sums beyond 64 bits)
  python scripts/check_api_accuracy.py --url http://127.0.0.1:8080 --rows 2000 --hours 2 --keys 20 \\
      --huge-share 0.05

exit status: 0 every hour matches, 1 some hour differs, 2 the check could not run (API unreachable, rejected rows)
"""


@dataclass
class Truth:
    """Exact sums per hour and key of what the API accepted."""

    sums: dict[int, dict[Key, list[int]]] = field(default_factory=dict)
    rows: int = 0

    def add(self, row: dict[str, Any]) -> None:
        key = (row["src_app"], row["dest_app"], row["vpc_id"])
        totals = self.sums.setdefault(row["hour"], {}).setdefault(key, [0, 0])
        totals[0] += row["bytes_tx"]
        totals[1] += row["bytes_rx"]
        self.rows += 1


def random_rows(
    count: int, hours: list[int], keys: int, namespace: str, seed: int, huge_share: float
) -> list[dict[str, Any]]:
    """Rows over a Zipf-ranked key set (a few keys get most rows), heavy-tailed byte counts."""
    rng = np.random.default_rng(seed)
    apps = [f"{namespace}-app{i}" for i in range(max(2, int(keys**0.5) + 1))]
    vpcs = [f"vpc-{namespace}-{i}" for i in range(max(1, keys // 10))]
    key_set: list[Key] = []
    while len(key_set) < keys:
        src, dst = rng.choice(len(apps), 2, replace=False)
        key = (apps[src], apps[dst], vpcs[int(rng.integers(len(vpcs)))])
        if key not in key_set:
            key_set.append(key)
    weights = 1.0 / np.arange(1, keys + 1) ** 1.1
    picks = rng.choice(keys, size=count, p=weights / weights.sum())
    hour_picks = rng.choice(hours, size=count)
    tx = np.floor(rng.lognormal(8, 2.5, size=count)).astype(np.int64)
    rx = np.floor(rng.lognormal(9, 2.5, size=count)).astype(np.int64)
    huge = rng.random(count) < huge_share
    rows = []
    for i in range(count):
        src, dst, vpc = key_set[picks[i]]
        bytes_tx, bytes_rx = int(tx[i]), int(rx[i])
        if huge[i]:
            bytes_tx, bytes_rx = MAX_INT64 - bytes_tx, MAX_INT64 - bytes_rx
        rows.append(
            {
                "src_app": src,
                "dest_app": dst,
                "vpc_id": vpc,
                "bytes_tx": bytes_tx,
                "bytes_rx": bytes_rx,
                "hour": int(hour_picks[i]),
            }
        )
    return rows


class ApiClient:
    def __init__(self, url: str, token: str | None, timeout_s: float = 30.0):
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s

    def _request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(
            self.url + path, data=body, method=method, headers={**self.headers, **(headers or {})}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def post(self, rows: list[dict[str, Any]], deadline: float) -> None:
        """POST one batch until it is accepted; the same Idempotency-Key on every attempt."""
        body = json.dumps(rows).encode()
        key = uuid.uuid4().hex
        backoff = 0.2
        while True:
            try:
                status, _, answer = self._request("POST", "/flows", body, {"Idempotency-Key": key})
            except OSError as exc:  # timeout, refused: the batch may or may not have landed; the key decides
                status, answer = 0, str(exc).encode()
            if 200 <= status < 300:
                return
            if status in (400, 401, 403, 413, 415):
                raise RuntimeError(
                    f"POST /flows rejected the batch: {status} {answer[:300].decode(errors='replace')}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"POST /flows kept failing: {status} {answer[:300].decode(errors='replace')}"
                )
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def hour(self, hour: int, page_size: int = 10000) -> list[dict[str, Any]]:
        """Every aggregate of one hour, following the X-Next-After cursor."""
        out: list[dict[str, Any]] = []
        after = None
        while True:
            query = f"/flows?hour={hour}&limit={page_size}" + (
                f"&after={urllib.request.quote(after)}" if after else ""
            )
            status, headers, body = self._request("GET", query)
            if status != 200:
                raise RuntimeError(f"GET {query}: {status} {body[:300].decode(errors='replace')}")
            out.extend(json.loads(body))
            after = {k.lower(): v for k, v in headers.items()}.get("x-next-after")
            if not after:
                return out


@dataclass
class HourRow:
    hour: int
    keys_expected: int
    keys_found: int
    keys_differing: int
    tx_expected: int
    tx_found: int
    rx_expected: int
    rx_found: int
    unsorted: bool

    @property
    def ok(self) -> bool:
        return self.keys_differing == 0 and not self.unsorted


def compare_hour(
    hour: int, expected: dict[Key, list[int]], answer: list[dict[str, Any]], namespace: str
) -> tuple[HourRow, list[str]]:
    mine = [a for a in answer if a["src_app"].startswith(namespace + "-")]
    found = {
        (a["src_app"], a["dest_app"], a["vpc_id"]): [int(a["bytes_tx"]), int(a["bytes_rx"])] for a in mine
    }
    keys = [(a["src_app"], a["dest_app"], a["vpc_id"]) for a in answer]
    differing = sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))
    row = HourRow(
        hour,
        len(expected),
        len(found),
        len(differing),
        sum(v[0] for v in expected.values()),
        sum(v[0] for v in found.values()),
        sum(v[1] for v in expected.values()),
        sum(v[1] for v in found.values()),
        unsorted=keys != sorted(keys) or len(mine) != len(found),
    )
    details = [f"hour {hour} {k}: expected {expected.get(k)} found {found.get(k)}" for k in differing[:5]]
    return row, details


def render(rows: list[HourRow], details: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="GET /flows against the rows sent")
    for column in (
        "hour",
        "keys expected",
        "keys found",
        "keys differing",
        "bytes_tx expected",
        "bytes_tx found",
        "bytes_rx expected",
        "bytes_rx found",
        "verdict",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        verdict = (
            "[green]ok[/]"
            if r.ok
            else ("[bold red]UNSORTED[/]" if r.unsorted and not r.keys_differing else "[bold red]DIFFERS[/]")
        )
        table.add_row(
            str(r.hour),
            f"{r.keys_expected:,}",
            f"{r.keys_found:,}",
            f"{r.keys_differing:,}",
            f"{r.tx_expected:,}",
            f"{r.tx_found:,}",
            f"{r.rx_expected:,}",
            f"{r.rx_found:,}",
            verdict,
        )
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    for line in details:
        console.print(f"  {line}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument(
        "--url", default="http://127.0.0.1:8080", help="the API's base URL (default http://127.0.0.1:8080)"
    )
    parser.add_argument("--token", help="bearer token, e.g. --token secret (default: none)")
    parser.add_argument("--rows", type=int, default=10000, help="rows to send (default 10000)")
    parser.add_argument(
        "--hours", type=int, default=3, help="spread the rows over this many hours (default 3)"
    )
    parser.add_argument(
        "--first-hour",
        type=int,
        help="first hour number (default: the current hour since the epoch minus --hours + 1)",
    )
    parser.add_argument(
        "--keys",
        type=int,
        default=100,
        help="distinct (src_app, dest_app, vpc_id) keys, Zipf-ranked (default 100)",
    )
    parser.add_argument("--batch", type=int, default=1000, help="rows per POST (default 1000)")
    parser.add_argument("--concurrency", type=int, default=4, help="POSTs in flight (default 4)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the rows (default 1)")
    parser.add_argument(
        "--namespace",
        help="prefix of every app name (default: random); only keys with it are "
        "compared, so other data in the API does not matter",
    )
    parser.add_argument(
        "--huge-share",
        type=float,
        default=0.0,
        help="share of rows with byte counts near 2^63-1, to test sums beyond 64 bits (default 0)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to keep retrying a failing POST before giving up (default 120)",
    )


def main(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    if min(args.rows, args.hours, args.keys, args.batch, args.concurrency) < 1:
        print(
            "check_api_accuracy: error: --rows, --hours, --keys, --batch and --concurrency must be positive",
            file=sys.stderr,
        )
        return 2
    namespace = args.namespace or f"chk{uuid.uuid4().hex[:8]}"
    first = args.first_hour if args.first_hour is not None else int(time.time() // 3600) - args.hours + 1
    hours = list(range(first, first + args.hours))
    rows = random_rows(args.rows, hours, args.keys, namespace, args.seed, args.huge_share)
    truth = Truth()
    client = ApiClient(args.url, args.token)
    deadline = time.monotonic() + args.timeout
    batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
    started = time.perf_counter()
    try:
        with (
            Progress(transient=True, disable=not sys.stderr.isatty()) as bar,
            ThreadPoolExecutor(args.concurrency) as pool,
        ):
            task = bar.add_task("POST /flows", total=len(rows))
            for batch, _ in zip(batches, pool.map(lambda b: client.post(b, deadline), batches), strict=True):
                for row in batch:
                    truth.add(row)
                bar.advance(task, len(batch))
        sent_s = time.perf_counter() - started
        results, details = [], []
        for hour in hours:
            row, lines = compare_hour(hour, truth.sums.get(hour, {}), client.hour(hour), namespace)
            results.append(row)
            details += lines
    except (RuntimeError, OSError) as exc:
        print(f"check_api_accuracy: error: {exc}", file=sys.stderr)
        return 2
    render(results, details)
    print(
        f"{truth.rows:,} rows in {len(batches)} POSTs, {sent_s:.2f} s ({truth.rows / sent_s:,.0f} rows/s), "
        f"namespace {namespace}"
    )
    if all(r.ok for r in results):
        print("verdict: OK, every hour's aggregates equal the rows sent")
        return 0
    print("verdict: DIFFERS in hours " + ", ".join(str(r.hour) for r in results if not r.ok))
    return 1
