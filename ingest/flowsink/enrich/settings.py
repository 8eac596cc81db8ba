"""Settings of enrichment (the ``enrich`` section): what flowsink adds to each document on the ingest tier."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from flowsink.errors import ConfigError
from flowsink.settings import setting

_INTERFACE_KEYS = {"name": str, "alias": str, "speed": int}


@dataclass
class EnrichSettings:
    exporters: dict[str, Any] = setting(
        factory=dict,
        example={
            "192.0.2.1": {
                "name": "edge-1",
                "tags": ["paris"],
                "labels": {"site": "par1"},
                "interfaces": {1: {"name": "ge-0/0/1", "alias": "transit A", "speed": 10_000_000_000}},
            }
        },
        help="per exporter address: name (observer.name), tags, labels, and interfaces by ifIndex "
        "(name, alias, speed in bit/s: observer.ingress/egress.interface.*)",
    )

    def validate(self) -> None:
        for address, entry in self.exporters.items():
            key = f"enrich.exporters.{address}"
            try:
                ipaddress.ip_address(str(address))
            except ValueError:
                raise ConfigError(
                    f"enrich.exporters: keys are exporter IP addresses, got {address!r}"
                ) from None
            if not isinstance(entry, dict):
                raise ConfigError(
                    f"{key}: expected a mapping (name, tags, labels, interfaces), got {entry!r}"
                )
            unknown = sorted(set(entry) - {"name", "tags", "labels", "interfaces"})
            if unknown:
                raise ConfigError(f"{key}.{unknown[0]}: unknown key (known: interfaces, labels, name, tags)")
            if not isinstance(entry.get("name", ""), str):
                raise ConfigError(f"{key}.name: expected a string, got {entry['name']!r}")
            tags = entry.get("tags", [])
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise ConfigError(f"{key}.tags: expected a list of strings, got {tags!r}")
            labels = entry.get("labels", {})
            if not isinstance(labels, dict) or not all(
                isinstance(v, str | int | float) for v in labels.values()
            ):
                raise ConfigError(f"{key}.labels: expected a mapping of names to values, got {labels!r}")
            interfaces = entry.get("interfaces", {})
            if not isinstance(interfaces, dict):
                raise ConfigError(
                    f"{key}.interfaces: expected a mapping of ifIndex to settings, got {interfaces!r}"
                )
            for index, interface in interfaces.items():
                where = f"{key}.interfaces.{index}"
                if not str(index).isdigit() or int(index) >= 1 << 32:
                    raise ConfigError(f"{key}.interfaces: keys are ifIndex numbers, got {index!r}")
                if not isinstance(interface, dict):
                    raise ConfigError(f"{where}: expected a mapping (name, alias, speed), got {interface!r}")
                for name, value in interface.items():
                    wanted = _INTERFACE_KEYS.get(name)
                    if wanted is None:
                        raise ConfigError(f"{where}.{name}: unknown key (known: alias, name, speed)")
                    if not isinstance(value, wanted) or isinstance(value, bool):
                        raise ConfigError(f"{where}.{name}: expected {wanted.__name__}, got {value!r}")
