"""``scripts/check_accuracy.py`` against a real Elasticsearch holding flow documents indexed directly (the
generators' traffic model through ``flowsink.generate.direct``, or a few documents written here): relative
``--since`` windows settle, a large check streams in bounded memory, per-exporter totals come first."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from flowsink.generate.accuracy import check
from flowsink.generate.direct import index_flows
from flowsink.generate.manifest import ExporterTruth, Manifest, canonical_key

REPO = Path(__file__).resolve().parent.parent
CHECK = REPO / "scripts" / "check_accuracy.py"


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


def test_since_relative_to_now_is_resolved_once_so_the_count_settles(es, flowsink_templates, tmp_path):
    index = f"{flowsink_templates}-flows-{time.strftime('%Y.%m.%d', time.gmtime())}"
    truth = ExporterTruth("127.0.0.21", domain=1)
    now = time.time()
    operations: list[dict] = []
    # 40 flows aged 7.5 s down to 1.65 s: "now-9s" holds them all when the check starts, and a window that slid
    # with the clock would lose one every 0.15 s from 1.5 s later on, never holding still for the quiet period
    for i in range(40):
        key = canonical_key("10.9.0.1", "10.9.0.2", 40000 + i, 443, 6)
        truth.add_record(key, 1000 + i, 2)
        operations += [
            {"create": {"_index": index}},
            {
                "@timestamp": iso(now - 7.5 + i * 0.15),
                "event": {"action": "ipfix_flow"},
                "observer": {"ip": truth.address},
                "source": {"ip": key[0], "port": key[2]},
                "destination": {"ip": key[1], "port": key[3]},
                "network": {"iana_number": "6", "bytes": 1000 + i, "packets": 2},
            },
        ]
    es.bulk(operations=operations, refresh=True)
    # and one flow that never arrived: the count stays below the manifest's, so the check waits for it to hold
    # still for the quiet period
    truth.add_record(canonical_key("10.9.0.1", "10.9.0.2", 39999, 443, 6), 999, 2)
    manifest = tmp_path / "m.json"
    Manifest(manifest, {"protocol": "ipfix"}, [truth]).write(final=True)
    started = time.monotonic()
    ok, rows, _ = check(
        manifest,
        os.environ.get("ES_URL", "http://127.0.0.1:9200"),
        f"{flowsink_templates}-flows-*",
        since="now-9s",
        timeout_s=6,
        quiet_s=3,
        show=False,
    )
    flows = next(r for r in rows if r.metric == "flows")
    assert (flows.expected, flows.found) == (41, 40)  # every flow in the window as it was at the start
    assert not ok
    assert time.monotonic() - started < 6  # settled, not timed out


def run_script(manifest: Path, index: str) -> tuple[int, str, int]:
    """The script in a process of its own: (exit status, output, peak resident memory in KiB).

    The peak is the process's own high-water mark (VmHWM), read as it runs: the ru_maxrss of a child counts the
    parent's memory at the fork, which would hide the check's own."""
    url = os.environ.get("ES_URL", "http://127.0.0.1:9200")
    command = [sys.executable, str(CHECK), "--manifest", str(manifest), "--es", url, "--index", index,
               "--timeout", "60", "--quiet-period", "1", "--no-progress"]  # fmt: skip
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True)
        peak = 0
        while process.poll() is None:
            status = Path(f"/proc/{process.pid}/status")
            with contextlib.suppress(OSError):
                peak = max(
                    [peak] + [int(x.split()[1]) for x in status.read_text().splitlines() if "VmHWM" in x]
                )
            time.sleep(0.05)
        output.seek(0)
        return process.returncode, output.read(), peak


@pytest.mark.slow
def test_a_large_check_streams_in_bounded_memory_and_reports_totals_first(es, flowsink_templates, tmp_path):
    prefix = flowsink_templates
    index_flows(es, f"{prefix}-flows-small", 3_000, tmp_path / "small.json", seed=3)
    index_flows(es, f"{prefix}-flows-large", 300_000, tmp_path / "large.json", seed=4)
    # one flow lost on the way: the check must say which
    hit = es.search(index=f"{prefix}-flows-large", size=1, query={"term": {"network.iana_number": "6"}})[
        "hits"
    ]
    gone = hit["hits"][0]
    es.delete(index=gone["_index"], id=gone["_id"], refresh=True)
    source = gone["_source"]

    small_status, small_output, small_rss = run_script(tmp_path / "small.json", f"{prefix}-flows-small")
    assert small_status == 0, small_output
    status, output, rss = run_script(tmp_path / "large.json", f"{prefix}-flows-large")
    assert status == 1, output
    exporter = source["observer"]["ip"]
    assert f"verdict: DIFFERS for exporters {exporter}" in output
    assert (
        f"{source['source']['ip']} {source['destination']['ip']} {source['source']['port']} "
        f"{source['destination']['port']} 6: expected (1, {source['network']['bytes']}, "
        f"{source['network']['packets']}) found None"
    ) in output
    # every exporter's totals are printed before the first line of the per-5-tuple pass
    lines = output.splitlines()
    last_total = max(i for i, line in enumerate(lines) if "│ packets" in line)
    first_tuple = min(i for i, line in enumerate(lines) if "5-tuple" in line)
    assert last_total < first_tuple, output
    # 100 times the 5-tuples of the small check, held page by page: the peak grows by far less than they take
    assert rss - small_rss < 64 * 1024, (small_rss, rss)


# ---------------------------------------------------------------- the streaming comparison, piece by piece


def test_buckets_become_canonical_tuples_in_tuple_order():
    from flowsink.generate.accuracy import canonical_tuples

    buckets = [  # composite order: src, dst, proto (as text), sport, dport, bytes, packets; missing first
        ("10.0.0.1", "10.0.0.2", "1", 0, 0x0800, 84, 1, 2),  # ICMP echo: type and code in the port
        ("10.0.0.1", "10.0.0.2", "1", 0, 0x0300, 70, 1, 1),
        ("10.0.0.1", "10.0.0.2", "17", None, 53, 60, 1, 1),  # no source port: 0, like the 0 after it
        ("10.0.0.1", "10.0.0.2", "17", None, 123, 76, 1, 1),
        ("10.0.0.1", "10.0.0.2", "17", 0, 53, 61, 1, 1),
        ("10.0.0.1", "10.0.0.2", "6", 40000, 443, 500, 3, 1),  # one tuple, two byte counts: two buckets
        ("10.0.0.1", "10.0.0.2", "6", 40000, 443, 700, 4, 2),
        ("10.0.0.1", "10.0.0.2", "6", 40001, None, 40, 1, 1),
    ]
    assert list(canonical_tuples(buckets)) == [
        (("10.0.0.1", "10.0.0.2", 0, 0, 1), (3, 238, 3)),
        (("10.0.0.1", "10.0.0.2", 0, 53, 17), (2, 121, 2)),
        (("10.0.0.1", "10.0.0.2", 0, 123, 17), (1, 76, 1)),
        (("10.0.0.1", "10.0.0.2", 40000, 443, 6), (3, 1900, 11)),
        (("10.0.0.1", "10.0.0.2", 40001, 0, 6), (1, 40, 1)),
    ]


def test_merge_names_what_differs_on_either_side_and_refuses_disorder():
    from flowsink.generate.accuracy import OutOfOrder, compare_tuples
    from flowsink.generate.manifest import tuple_order

    keys = sorted(
        [canonical_key("10.0.0.1", "10.0.0.2", p, 443, 6) for p in (1000, 1001, 1002)]
        + [canonical_key("2001:db8::1", "2001:db8::2", 0, 0, 58)],
        key=tuple_order,
    )
    expected = [(keys[0], (1, 100, 1)), (keys[1], (2, 200, 2)), (keys[3], (1, 84, 1))]
    found = [(keys[0], (1, 100, 1)), (keys[1], (2, 150, 2)), (keys[2], (1, 9, 1)), (keys[3], (1, 84, 1))]
    result = compare_tuples(expected, found)
    assert (result.expected_tuples, result.found_tuples, result.differing) == (3, 4, 2)
    assert result.shown == [
        "10.0.0.1 10.0.0.2 1001 443 6: expected (2, 200, 2) found (2, 150, 2)",
        "10.0.0.1 10.0.0.2 1002 443 6: expected None found (1, 9, 1)",
    ]
    assert result.found_totals == (5, 343, 5)
    assert compare_tuples(expected, []).differing == 3
    with pytest.raises(OutOfOrder):
        compare_tuples([(keys[1], (1, 1, 1)), (keys[0], (1, 1, 1))], [(keys[3], (1, 1, 1))])


def test_order_text_sorts_as_tuple_order():
    import random

    from flowsink.generate.accuracy import order_text
    from flowsink.generate.manifest import tuple_order

    rng = random.Random(5)
    addresses = ["", "::", "::1", "0.0.0.1", "10.0.0.9", "10.0.0.10", "198.18.0.1", "2001:db8::1", "fe80::1"]
    keys = [
        (rng.choice(addresses), rng.choice(addresses), rng.randrange(0, 65536), rng.choice((0, 1, 443)),
         rng.choice((-1, 1, 6, 17, 58)))
        for _ in range(2000)
    ]  # fmt: skip
    assert sorted(keys, key=lambda k: order_text("e", k)) == sorted(keys, key=tuple_order)


def test_slices_cover_every_address_and_cut_a_heavy_source_by_destination():
    from flowsink.generate.accuracy import Slice, plan_slices

    sources = [("10.0.0.1", 4, []), ("10.0.0.2", 4, []), ("10.0.0.3", 25, ["10.1.0.5", "10.1.0.9"]),
               ("10.0.0.4", 3, []), ("10.0.0.5", 9, [])]  # fmt: skip
    assert list(plan_slices("e", sources, target=10)) == [
        Slice("e", None, True, "10.0.0.3"),
        Slice("e", None, True, "10.1.0.5", source="10.0.0.3"),
        Slice("e", "10.1.0.5", True, "10.1.0.9", source="10.0.0.3"),
        Slice("e", "10.1.0.9", True, None, source="10.0.0.3"),
        Slice("e", "10.0.0.3", False, "10.0.0.5"),
        Slice("e", "10.0.0.5", True, None),
    ]
    assert list(plan_slices("e", [])) == [Slice("e")]
    # the first slice also takes documents without the address; a slice after a heavy source starts after it
    first = Slice("e", None, True, "10.0.0.3").filters()[1]["bool"]["should"]
    assert first[1] == {"bool": {"must_not": {"exists": {"field": "source.ip"}}}}
    assert Slice("e", "10.0.0.3", False, None).filters()[1] == {"range": {"source.ip": {"gt": "10.0.0.3"}}}


def test_relative_since_is_pinned_to_the_start():
    from flowsink.generate.accuracy import resolve_since

    start = 1_700_000_000.25
    assert resolve_since("now-15m", start) == "2023-11-14T22:13:20.250Z||-15m"
    assert resolve_since("now/d", start) == "2023-11-14T22:13:20.250Z||/d"
    assert resolve_since("now", start) == "2023-11-14T22:13:20.250Z"
    assert resolve_since("2026-01-01T10:00:00Z", start) == "2026-01-01T10:00:00Z"
    assert resolve_since(None, start) is None


def test_older_manifests_are_checked_too(es, flowsink_templates, tmp_path):
    """A side file in text order (written before the check streamed) is sorted first; without a side file the
    digests are recomputed. Both still catch a lost flow."""
    import orjson

    manifest = tmp_path / "m.json"
    index = f"{flowsink_templates}-flows-old"
    index_flows(es, index, 3_000, manifest, seed=5)
    side = tmp_path / "m.tuples.jsonl"
    document = orjson.loads(manifest.read_bytes())
    del document["tuples_order"]
    manifest.write_bytes(orjson.dumps(document))
    side.write_bytes(b"".join(sorted(side.read_bytes().splitlines(keepends=True))))
    url = os.environ.get("ES_URL", "http://127.0.0.1:9200")
    ok, rows, _ = check(manifest, url, index, timeout_s=30, quiet_s=1, show=False)
    assert ok and {r.metric for r in rows} >= {"5-tuples", "5-tuples differing"}
    hit = es.search(index=index, size=1)["hits"]["hits"][0]
    es.delete(index=index, id=hit["_id"], refresh=True)
    ok, rows, details = check(manifest, url, index, timeout_s=30, quiet_s=1, show=False)
    assert not ok and [r.metric for r in rows if not r.ok] == [
        "flows",
        "bytes",
        "packets",
        "5-tuples",
        "5-tuples differing",
    ]
    assert sum(len(lines) for lines in details.values()) == 1
    side.unlink()
    ok, rows, _ = check(manifest, url, index, timeout_s=30, quiet_s=1, show=False)
    assert [r.metric for r in rows if not r.ok] == ["flows", "bytes", "packets", "5-tuple digest"]
    es.index(index=index, document=hit["_source"], refresh=True)
    ok, rows, _ = check(manifest, url, index, timeout_s=30, quiet_s=1, show=False)
    assert ok, [r for r in rows if not r.ok]
