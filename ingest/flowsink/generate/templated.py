"""What NetFlow v9 and IPFIX exporters share: template refresh timing, packing records into datagrams, padding."""

from __future__ import annotations

from collections.abc import Callable

from flowsink.generate.model import Flow

# data template ids of both encoders: one for IPv4 flows, one for IPv6 flows
TEMPLATE_V4, TEMPLATE_V6 = 256, 257


def pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def take_fitting(flows: list[Flow], budget: int, size_of: Callable[[Flow], int], max_records: int) -> int:
    """How many leading flows fit in ``budget`` bytes (at least one, so a tiny budget still makes progress)."""
    total = 0
    for count, flow in enumerate(flows[:max_records]):
        total += size_of(flow)
        if total > budget:
            return max(count, 1)
    return min(len(flows), max_records)


def data_sets(
    flows: list[Flow], encode: Callable[[Flow], bytes], make_set: Callable[[int, bytes], bytes]
) -> list[bytes]:
    """One data set (flowset) per template: the IPv4 records, then the IPv6 records, each in the given order."""
    by_template: dict[int, list[bytes]] = {TEMPLATE_V4: [], TEMPLATE_V6: []}
    for flow in flows:
        by_template[TEMPLATE_V4 if flow.ip_version == 4 else TEMPLATE_V6].append(encode(flow))
    return [
        make_set(template_id, b"".join(encoded)) for template_id, encoded in by_template.items() if encoded
    ]


class TemplateClock:
    """Templates (and options data) go out in the first datagram and again every ``refresh_ms``."""

    def __init__(self, refresh_ms: int):
        self.refresh_ms = refresh_ms
        self.sent_ms: int | None = None

    def due(self, now_ms: int) -> bool:
        if self.sent_ms is None or now_ms - self.sent_ms >= self.refresh_ms:
            self.sent_ms = now_ms
            return True
        return False
