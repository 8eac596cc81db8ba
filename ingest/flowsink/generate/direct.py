"""Flows of the traffic model indexed straight into Elasticsearch, with the manifest they match: data sets for
the accuracy check's tests and benchmark.

Sending millions of flows through UDP and a node takes an hour; the check reads the same documents either way,
so this writes them directly: the fields the check reads of a node's flow documents (``observer.ip``,
``source``/``destination`` ip and port, ``network.iana_number``/``bytes``/``packets``, ``event.action``,
``@timestamp``), ICMP type and code in the destination port as exporters send them. The manifest is the one a
generator run would write (per-exporter totals, digests, and the ``.tuples.jsonl`` side file in the checker's
order), computed with numpy so that 10M flows need no Python object per flow.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from flowsink.generate.manifest import FORMAT, TUPLES_ORDER, address_order
from flowsink.generate.model import ICMP_MESSAGES, ICMPV6_MESSAGES, TrafficModel, TrafficSettings

EXPORTERS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
CHUNK = 500_000  # flows drawn at once
BULK_DOCS = 5_000


class DataSet:
    """Flows of the traffic model as bulk bodies, and the columns the manifest is computed from."""

    def __init__(self, seed: int = 7) -> None:
        self.model = TrafficModel(TrafficSettings(seed=seed))
        self.rng = np.random.default_rng(seed + 1)
        # one table of every address the model uses: clients and servers, IPv4 and IPv6
        self.offsets: dict[tuple[str, int], int] = {}
        texts: list[str] = []
        for role, pools in (("client", self.model.clients), ("server", self.model.servers)):
            for version in (4, 6):
                self.offsets[(role, version)] = len(texts)
                texts += [text for text, _raw in pools[version]]
        self.addresses = np.array(texts, dtype=object)
        # the rank of each address in the order Elasticsearch's ip type sorts them (the manifest's order)
        order = sorted(range(len(texts)), key=lambda i: address_order(texts[i]))
        self.rank = np.empty(len(texts), dtype=np.int32)
        self.rank[order] = np.arange(len(texts), dtype=np.int32)
        self.columns: dict[str, list[np.ndarray]] = {
            k: [] for k in ("exporter", "src", "dst", "sport", "dport", "proto", "bytes", "packets")
        }

    def chunk(self, count: int, now_ms: int) -> dict[str, np.ndarray]:
        """``count`` flows as columns (addresses as indices into ``self.addresses``)."""
        draw = self.model.draw(count, now_ms)
        version = draw["version"]
        kinds = np.array(self.model.protocol_names, dtype=object)[draw["kind"]]
        client = draw["client"] + np.where(
            version == 4, self.offsets[("client", 4)], self.offsets[("client", 6)]
        )
        server = draw["server"] + np.where(
            version == 4, self.offsets[("server", 4)], self.offsets[("server", 6)]
        )
        icmp = kinds == "icmp"
        messages = np.array([t << 8 | c for t, c in ICMP_MESSAGES])
        messages6 = np.array([t << 8 | c for t, c in ICMPV6_MESSAGES])
        service = np.where(
            kinds == "tcp",
            draw["tcp_port"],
            np.where(
                kinds == "udp",
                draw["udp_port"],
                np.where(version == 4, messages[draw["icmp"]], messages6[draw["icmp"]]),
            ),
        )
        outbound = draw["outbound"] | icmp
        proto = np.where(icmp, np.where(version == 4, 1, 58), np.where(kinds == "tcp", 6, 17))
        columns = {
            "exporter": self.rng.integers(0, len(EXPORTERS), size=count).astype(np.int8),
            "src": np.where(outbound, client, server).astype(np.int32),
            "dst": np.where(outbound, server, client).astype(np.int32),
            # exporters carry ICMP type and code in the destination port; the source port is 0
            "sport": np.where(icmp, 0, np.where(outbound, draw["ephemeral"], service)).astype(np.int32),
            "dport": np.where(icmp, service, np.where(outbound, service, draw["ephemeral"])).astype(np.int32),
            "proto": proto.astype(np.int16),
            "bytes": (draw["packets"] * draw["size"]).astype(np.int64),
            "packets": draw["packets"].astype(np.int64),
        }
        for key, values in columns.items():
            self.columns[key].append(values)
        return columns

    def bodies(self, columns: dict[str, np.ndarray], index: str, timestamp: str) -> Iterator[bytes]:
        """Bulk request bodies of ``BULK_DOCS`` documents: what the check reads of a node's flow documents."""
        addresses = self.addresses
        action = b'{"create":{"_index":"' + index.encode() + b'"}}\n'
        rows = zip(
            (EXPORTERS[e] for e in columns["exporter"].tolist()),
            addresses[columns["src"]].tolist(),
            addresses[columns["dst"]].tolist(),
            columns["sport"].tolist(),
            columns["dport"].tolist(),
            columns["proto"].tolist(),
            columns["bytes"].tolist(),
            columns["packets"].tolist(),
            strict=True,
        )
        lines: list[bytes] = []
        for exporter, src, dst, sport, dport, proto, bytes_, packets in rows:
            lines.append(action)
            lines.append(
                (
                    f'{{"@timestamp":"{timestamp}","event":{{"action":"ipfix_flow"}},"observer":{{"ip":"{exporter}"}},'
                    f'"source":{{"ip":"{src}","port":{sport}}},"destination":{{"ip":"{dst}","port":{dport}}},'
                    f'"network":{{"iana_number":"{proto}","bytes":{bytes_},"packets":{packets}}}}}\n'
                ).encode()
            )
            if len(lines) == 2 * BULK_DOCS:
                yield b"".join(lines)
                lines = []
        if lines:
            yield b"".join(lines)

    def write_manifest(self, path: Path) -> int:
        """The manifest of every flow made so far (and its side file, in the check's order); returns the
        number of distinct 5-tuples."""
        c = {k: np.concatenate(v) for k, v in self.columns.items()}
        icmp = np.isin(c["proto"], (1, 58))
        sport = np.where(icmp, 0, c["sport"])
        dport = np.where(icmp, 0, c["dport"])
        proto_rank = np.argsort(np.argsort(np.array([str(p) for p in range(256)])))[c["proto"]]
        order = np.lexsort(
            (dport, sport, proto_rank, self.rank[c["dst"]], self.rank[c["src"]], c["exporter"])
        )
        keys = np.stack([c["exporter"], c["src"], c["dst"], sport, dport, c["proto"]])[:, order]
        starts = np.flatnonzero(np.concatenate(([True], np.any(keys[:, 1:] != keys[:, :-1], axis=0))))
        flows = np.diff(np.append(starts, keys.shape[1]))
        bytes_ = np.add.reduceat(c["bytes"][order], starts)
        packets = np.add.reduceat(c["packets"][order], starts)
        exporters: dict[str, dict] = {}
        side = path.with_name(path.name.removesuffix(".json") + ".tuples.jsonl")
        with open(side, "wb") as out:
            for e, address in enumerate(EXPORTERS):
                mine = keys[0, starts] == e
                rows = zip(
                    self.addresses[keys[1, starts[mine]]].tolist(),
                    self.addresses[keys[2, starts[mine]]].tolist(),
                    keys[3, starts[mine]].tolist(),
                    keys[4, starts[mine]].tolist(),
                    keys[5, starts[mine]].tolist(),
                    flows[mine].tolist(),
                    bytes_[mine].tolist(),
                    packets[mine].tolist(),
                    strict=True,
                )
                digest_lines = []
                for src, dst, sp, dp, pr, n, b, p in rows:
                    out.write(orjson.dumps([address, src, dst, sp, dp, pr, n, b, p]) + b"\n")
                    digest_lines.append(f"{src} {dst} {sp} {dp} {pr} {n} {b} {p}")
                digest_lines.sort()
                exporters[address] = {
                    "address": address,
                    "flows": int(flows[mine].sum()),
                    "bytes": int(bytes_[mine].sum()),
                    "packets": int(packets[mine].sum()),
                    "tuples": int(mine.sum()),
                    "digest": hashlib.sha256("\n".join(digest_lines).encode()).hexdigest(),
                }
        totals = {k: sum(e[k] for e in exporters.values()) for k in ("flows", "bytes", "packets")}
        document = {
            "format": FORMAT,
            "protocol": "ipfix",
            "complete": True,
            "totals": totals,
            "exporters": exporters,
            "digest": hashlib.sha256(
                "\n".join(f"{a} {e['digest']}" for a, e in sorted(exporters.items())).encode()
            ).hexdigest(),
            "tuples_file": side.name,
            "tuples_order": TUPLES_ORDER,
        }
        path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        return len(starts)


def index_flows(es: Any, index: str, flows: int, manifest: Path, seed: int = 7, progress: Any = None) -> int:
    """Index ``flows`` flows into ``index`` (two bulk requests in flight), refresh it, and write their manifest
    to ``manifest``; returns the number of distinct 5-tuples. ``progress(made)`` is called after each chunk."""
    data = DataSet(seed)

    def send(body: bytes) -> None:
        response = es.bulk(operations=body)
        if response.get("errors"):
            item = next(i for i in response["items"] if next(iter(i.values())).get("error"))
            raise RuntimeError(f"bulk item failed: {item}")

    made = 0
    with ThreadPoolExecutor(2) as pool:
        while made < flows:
            count = min(CHUNK, flows - made)
            now = time.time()
            timestamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".000Z"
            columns = data.chunk(count, int(now * 1000))
            for _ in pool.map(send, data.bodies(columns, index, timestamp)):
                pass
            made += count
            if progress is not None:
                progress(made)
    es.indices.refresh(index=index)
    return data.write_manifest(manifest)
