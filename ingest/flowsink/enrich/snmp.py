"""Names by SNMP: each exporter's sysName, and its interfaces' ifName, ifAlias and ifHighSpeed (IF-MIB's ifXTable),
polled with ``pysnmp`` (v2c or v3) by the node's enrichment process, never on the per-flow path.

What a poll finds becomes, per exporter address, the settings an ``enrich.exporters`` entry would have (``name``,
``interfaces`` by ifIndex with ``name``, ``alias``, ``speed`` in bit/s), which the workers merge under the
configured ones (``Enricher._build_exporters``). OIDs are numeric and looked up without MIB files.
"""

from __future__ import annotations

import asyncio
from typing import Any

from flowsink.enrich.settings import EnrichSettings, snmp_target
from flowsink.log import RateLimitedLog, get_logger

log = get_logger(__name__)
errors_log = RateLimitedLog(log, 60.0)

SYS_NAME = "1.3.6.1.2.1.1.5.0"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
IF_ALIAS = "1.3.6.1.2.1.31.1.1.1.18"
IF_HIGH_SPEED = "1.3.6.1.2.1.31.1.1.1.15"  # Mbit/s
MAX_INTERFACES = 100_000  # an agent that never ends its table must not fill the memory


class PollError(Exception):
    """A poll that failed: ``reason`` timeout, auth or error (flowsink_enrich_snmp_polls_total's result)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _auth(settings: EnrichSettings) -> Any:
    from pysnmp.hlapi.v3arch import asyncio as hl

    if settings.snmp_version == "2c":
        return hl.CommunityData(settings.snmp_community, mpModel=1)
    auth = {
        "md5": hl.usmHMACMD5AuthProtocol,
        "sha": hl.usmHMACSHAAuthProtocol,
        "sha224": hl.usmHMAC128SHA224AuthProtocol,
        "sha256": hl.usmHMAC192SHA256AuthProtocol,
        "sha384": hl.usmHMAC256SHA384AuthProtocol,
        "sha512": hl.usmHMAC384SHA512AuthProtocol,
    }
    priv = {
        "des": hl.usmDESPrivProtocol,
        "aes": hl.usmAesCfb128Protocol,
        "aes192": hl.usmAesCfb192Protocol,
        "aes256": hl.usmAesCfb256Protocol,
    }
    if not settings.snmp_auth_key:
        return hl.UsmUserData(settings.snmp_user)
    if not settings.snmp_priv_key:
        return hl.UsmUserData(
            settings.snmp_user,
            authKey=settings.snmp_auth_key,
            authProtocol=auth[settings.snmp_auth_protocol],
        )
    return hl.UsmUserData(
        settings.snmp_user,
        authKey=settings.snmp_auth_key,
        privKey=settings.snmp_priv_key,
        authProtocol=auth[settings.snmp_auth_protocol],
        privProtocol=priv[settings.snmp_priv_protocol],
    )


def _failure(indication: Any) -> PollError:
    text = str(indication)
    lowered = text.lower()
    if "timeout" in lowered or "no snmp response" in lowered:
        return PollError("timeout", text)
    if any(
        word in lowered
        for word in ("digest", "unknown user", "unknownusername", "decryption", "auth", "security")
    ):
        return PollError("auth", text)
    return PollError("error", text)


def _text(value: Any) -> str:
    """An OCTET STRING as text: UTF-8 when it is, else Latin-1 (every byte a character: nothing lost or refused)."""
    raw = bytes(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


async def _walk(engine: Any, auth: Any, target: Any, column: str) -> dict[int, Any]:
    """ifIndex -> value of one ifXTable column (GETBULK), {} when the agent has no such column."""
    from pysnmp.hlapi.v3arch import asyncio as hl

    found: dict[int, Any] = {}
    prefix = tuple(int(part) for part in column.split("."))
    async for indication, status, _index, bindings in hl.bulk_walk_cmd(
        engine,
        auth,
        target,
        hl.ContextData(),
        0,
        50,
        hl.ObjectType(hl.ObjectIdentity(column)),
        lexicographicMode=False,
        lookupMib=False,
    ):
        if indication:
            raise _failure(indication)
        if status:
            raise PollError("error", f"{status.prettyPrint()} walking {column}")
        for name, value in bindings:
            oid = tuple(name)
            if oid[: len(prefix)] != prefix or len(oid) != len(prefix) + 1:
                return found
            if isinstance(value, hl.EndOfMibView | hl.NoSuchObject | hl.NoSuchInstance):
                return found
            found[oid[-1]] = value
            if len(found) >= MAX_INTERFACES:
                return found
    return found


async def poll_exporter(engine: Any, settings: EnrichSettings, address: str, port: int) -> dict[str, Any]:
    """One exporter's names, as an ``enrich.exporters`` entry: ``name`` (sysName) and ``interfaces``. Raises
    PollError."""
    from pysnmp.hlapi.v3arch import asyncio as hl

    auth = _auth(settings)
    transport = hl.Udp6TransportTarget if ":" in address else hl.UdpTransportTarget
    target = await transport.create(
        (address, port), timeout=settings.snmp_timeout_s, retries=settings.snmp_retries
    )
    indication, status, _index, bindings = await hl.get_cmd(
        engine, auth, target, hl.ContextData(), hl.ObjectType(hl.ObjectIdentity(SYS_NAME)), lookupMib=False
    )
    if indication:
        raise _failure(indication)
    if status:
        raise PollError("error", f"{status.prettyPrint()} reading sysName")
    names: dict[str, Any] = {}
    for _name, value in bindings:
        if isinstance(value, hl.OctetString) and bytes(value):
            names["name"] = _text(value)
    if_name = await _walk(engine, auth, target, IF_NAME)
    if_alias = await _walk(engine, auth, target, IF_ALIAS)
    if_speed = await _walk(engine, auth, target, IF_HIGH_SPEED)
    interfaces: dict[str, dict[str, Any]] = {}
    for index in sorted(if_name.keys() | if_alias.keys() | if_speed.keys()):
        interface: dict[str, Any] = {}
        if index in if_name and bytes(if_name[index]):
            interface["name"] = _text(if_name[index])
        if index in if_alias and bytes(if_alias[index]):  # an empty ifAlias is no alias
            interface["alias"] = _text(if_alias[index])
        speed = int(if_speed[index]) if index in if_speed else 0
        if speed > 0:  # 0: unknown, or below 1 Mbit/s (RFC 2863 ifHighSpeed)
            interface["speed"] = speed * 1_000_000
        if interface and 0 <= index < 1 << 32:
            interfaces[str(index)] = interface
    if interfaces:
        names["interfaces"] = interfaces
    return names


async def poll_all(settings: EnrichSettings, known: dict[str, Any]) -> dict[str, Any]:
    """Every target polled (at most 16 at once); returns the names per exporter address. A target that fails keeps
    what ``known`` (the last polls) has for it: names go stale rather than away while an agent is unreachable."""
    from pysnmp.hlapi.v3arch import asyncio as hl

    from flowsink import metrics

    engine = hl.SnmpEngine()
    limit = asyncio.Semaphore(16)
    targets = [snmp_target(text, settings.snmp_port) for text in settings.snmp_targets]
    result: dict[str, Any] = {}

    async def one(address: str, port: int) -> None:
        label = metrics.exporter_label(address)
        async with limit:
            try:
                result[address] = await poll_exporter(engine, settings, address, port)
            except PollError as exc:
                metrics.ENRICH_SNMP_POLLS.labels(exporter=label, result=exc.reason).inc()
                errors_log.warning(
                    f"snmp:{address}:{exc.reason}",
                    "SNMP poll of %s:%d failed (%s): %s",
                    address,
                    port,
                    exc.reason,
                    exc,
                )
                if address in known:
                    result[address] = known[address]
                return
            except Exception as exc:  # a library error must cost this target's names only
                metrics.ENRICH_SNMP_POLLS.labels(exporter=label, result="error").inc()
                errors_log.warning(
                    f"snmp:{address}:error", "SNMP poll of %s:%d failed: %r", address, port, exc
                )
                if address in known:
                    result[address] = known[address]
                return
        metrics.ENRICH_SNMP_POLLS.labels(exporter=label, result="ok").inc()

    try:
        await asyncio.gather(*(one(address, port) for address, port in targets))
    finally:
        engine.close_dispatcher()
    return result
