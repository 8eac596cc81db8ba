"""Settings of enrichment (the ``enrich`` section): what flowsink adds to each document on the ingest tier.

Every key is reloadable: SIGHUP rebuilds the pipeline workers' enricher (and so empties its caches); a new version
of a GeoIP database or of the SNMP names needs no SIGHUP (flowsink.enrich.sources).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from flowsink.errors import ConfigError
from flowsink.settings import setting

_INTERFACE_KEYS = {"name": str, "alias": str, "speed": int}
SNMP_AUTH_PROTOCOLS = ("md5", "sha", "sha224", "sha256", "sha384", "sha512")
SNMP_PRIV_PROTOCOLS = ("des", "aes", "aes192", "aes256")


def _text(where: str, value: Any) -> None:
    """A string every writer can put in a document: JSON has no lone surrogates (YAML's escapes can make one)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{where}: not valid text (a lone surrogate), got {value!r}") from None


@dataclass
class EnrichSettings:
    exporters: dict[str, Any] = setting(
        factory=dict,
        reloadable=True,
        example={
            "192.0.2.1": {
                "name": "edge-1",
                "tags": ["paris"],
                "labels": {"site": "par1"},
                "interfaces": {1: {"name": "ge-0/0/1", "alias": "transit A", "speed": 10_000_000_000}},
            }
        },
        help="per exporter address: name (observer.name), tags, labels, and interfaces by ifIndex "
        "(name, alias, speed in bit/s: observer.ingress/egress.interface.*); a configured interface name wins "
        "over the one the exporter sends",
    )
    internal_networks: list[str] = setting(
        factory=list,
        reloadable=True,
        example=["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"],
        help="CIDRs of your own networks: source/destination/flow.locality, network.direction "
        "(inbound, outbound, internal, external) and related.ip on every flow",
    )
    geoip_databases: list[str] = setting(
        factory=list,
        reloadable=True,
        example=["/var/lib/GeoIP/GeoLite2-City.mmdb", "/var/lib/GeoIP/GeoLite2-ASN.mmdb"],
        help="MaxMind-format databases (.mmdb: GeoLite2/GeoIP2 City, Country or ASN, DB-IP Lite, ...), the kind "
        "read from each file's metadata: source/destination.geo.* and .as.*; a file replaced on disk is "
        "read again without a restart (docs/enrichment.md)",
    )
    geoip_check_interval_s: float = setting(
        10.0,
        min=0.5,
        max=86400,
        reloadable=True,
        help="how often the databases' files are checked for a new version",
    )
    snmp_targets: list[str] = setting(
        factory=list,
        reloadable=True,
        example=["192.0.2.1", "192.0.2.2:1161"],
        help="exporters to poll by SNMP (address, or address:port; [v6]:port) for sysName, ifName, ifAlias "
        "and ifHighSpeed: observer.name and the interfaces' name, alias, speed; configured names win",
    )
    snmp_version: str = setting(
        "2c", choices=("2c", "3"), reloadable=True, help="SNMP version: 2c (community) or 3 (user-based)"
    )
    snmp_community: str = setting("public", secret=True, reloadable=True, help="SNMPv2c community")
    snmp_user: str = setting("", reloadable=True, help="SNMPv3 user name")
    snmp_auth_protocol: str = setting(
        "sha", choices=SNMP_AUTH_PROTOCOLS, reloadable=True, help="SNMPv3 authentication protocol"
    )
    snmp_auth_key: str = setting(
        "", secret=True, reloadable=True, help="SNMPv3 authentication passphrase (empty: noAuthNoPriv)"
    )
    snmp_priv_protocol: str = setting(
        "aes", choices=SNMP_PRIV_PROTOCOLS, reloadable=True, help="SNMPv3 privacy protocol"
    )
    snmp_priv_key: str = setting(
        "", secret=True, reloadable=True, help="SNMPv3 privacy passphrase (empty: authNoPriv)"
    )
    snmp_port: int = setting(161, min=1, max=65535, reloadable=True, help="UDP port of the agents")
    snmp_refresh_interval_s: float = setting(
        300.0, min=1, max=86400, reloadable=True, help="how often every target is polled again"
    )
    snmp_timeout_s: float = setting(2.0, min=0.1, max=60, reloadable=True, help="SNMP request timeout")
    snmp_retries: int = setting(1, min=0, max=10, reloadable=True, help="SNMP request retries")
    address_cache_size: int = setting(
        65536,
        min=64,
        max=1 << 24,
        reloadable=True,
        help="per-address results kept per pipeline worker (32 bytes each); when full, entries are replaced",
    )

    def validate(self) -> None:
        for index, text in enumerate(self.internal_networks):
            key = f"enrich.internal_networks[{index}]"
            try:
                ipaddress.ip_network(text.strip(), strict=True)
            except ValueError as exc:  # its message says why: not an address, a bad prefix, host bits set
                raise ConfigError(f"{key}: not a CIDR, got {text!r} ({exc})") from None
        for address, entry in self.exporters.items():
            self._validate_exporter(address, entry)
        for index, path in enumerate(self.geoip_databases):
            if not path.strip():
                raise ConfigError(f"enrich.geoip_databases[{index}]: a path is required, got {path!r}")
        for index, target in enumerate(self.snmp_targets):
            try:
                snmp_target(target, self.snmp_port)
            except ValueError as exc:
                raise ConfigError(f"enrich.snmp_targets[{index}]: {exc}") from None
        if self.snmp_targets and self.snmp_version == "3":
            if not self.snmp_user:
                raise ConfigError("enrich.snmp_user: SNMPv3 needs a user name, got ''")
            if self.snmp_priv_key and not self.snmp_auth_key:
                raise ConfigError("enrich.snmp_priv_key: SNMPv3 privacy needs authentication (snmp_auth_key)")
            for key in ("snmp_auth_key", "snmp_priv_key"):
                if 0 < len(getattr(self, key)) < 8:  # RFC 3414 section 11.2: at least 8 characters
                    raise ConfigError(f"enrich.{key}: an SNMPv3 passphrase has at least 8 characters")

    @staticmethod
    def _validate_exporter(address: Any, entry: Any) -> None:
        key = f"enrich.exporters.{address}"
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            raise ConfigError(f"enrich.exporters: keys are exporter IP addresses, got {address!r}") from None
        if not isinstance(entry, dict):
            raise ConfigError(f"{key}: expected a mapping (name, tags, labels, interfaces), got {entry!r}")
        unknown = sorted(set(entry) - {"name", "tags", "labels", "interfaces"})
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}: unknown key (known: interfaces, labels, name, tags)")
        if not isinstance(entry.get("name", ""), str):
            raise ConfigError(f"{key}.name: expected a string, got {entry['name']!r}")
        _text(f"{key}.name", entry.get("name", ""))
        tags = entry.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ConfigError(f"{key}.tags: expected a list of strings, got {tags!r}")
        for tag in tags:
            _text(f"{key}.tags", tag)
        labels = entry.get("labels", {})
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
            for k, v in labels.items()
        ):
            raise ConfigError(f"{key}.labels: expected a mapping of names to values, got {labels!r}")
        for name, value in labels.items():
            _text(f"{key}.labels", name)
            _text(f"{key}.labels.{name}", str(value))
        interfaces = entry.get("interfaces", {})
        if not isinstance(interfaces, dict):
            raise ConfigError(
                f"{key}.interfaces: expected a mapping of ifIndex to settings, got {interfaces!r}"
            )
        seen: set[int] = set()
        for index, interface in interfaces.items():
            where = f"{key}.interfaces.{index}"
            if isinstance(index, bool) or not str(index).isdigit() or int(index) >= 1 << 32:
                raise ConfigError(f"{key}.interfaces: keys are ifIndex numbers, got {index!r}")
            if int(index) in seen:
                raise ConfigError(f"{key}.interfaces: ifIndex {int(index)} is given twice")
            seen.add(int(index))
            if not isinstance(interface, dict):
                raise ConfigError(f"{where}: expected a mapping (name, alias, speed), got {interface!r}")
            for name, value in interface.items():
                wanted = _INTERFACE_KEYS.get(name)
                if wanted is None:
                    raise ConfigError(f"{where}.{name}: unknown key (known: alias, name, speed)")
                if not isinstance(value, wanted) or isinstance(value, bool):
                    raise ConfigError(f"{where}.{name}: expected {wanted.__name__}, got {value!r}")
                if wanted is str:
                    _text(f"{where}.{name}", value)
                elif not 0 <= value < 1 << 63:
                    raise ConfigError(f"{where}.{name}: must be between 0 and 2^63-1 bit/s, got {value!r}")

    def configured(self) -> bool:
        """Whether anything is added at all: without, documents are exactly what they are without the section."""
        return bool(self.exporters or self.internal_networks or self.geoip_databases or self.snmp_targets)


def snmp_target(text: str, default_port: int) -> tuple[str, int]:
    """``address``, ``address:port`` or ``[v6 address]:port`` -> (the address as observer.ip writes it, port);
    ValueError saying what is wrong. The address is the exporter's: the names polled are its names."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"expected address, address:port or [v6]:port, got {text!r}")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, tail = text.partition(":")
        if not tail.isdigit():
            raise ValueError(f"expected address, address:port or [v6]:port, got {text!r}")
        port = int(tail)
    try:
        address = ipaddress.ip_address(host).compressed
    except ValueError:
        raise ValueError(f"not an IP address, got {text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {text!r}")
    return address, port
