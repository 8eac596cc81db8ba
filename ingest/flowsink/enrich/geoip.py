"""GeoIP and AS from MaxMind-format databases (``enrich.geoip_databases``), read with the ``maxminddb`` C extension.

Each file says what it is in its metadata (``database_type``): a City or Country database (GeoLite2, GeoIP2, DB-IP
Lite ...) gives ``geo`` (the names of Elasticsearch's geoip processor, which Filebeat's pipelines use), an ASN
database (GeoLite2-ASN, DB-IP ASN Lite, GeoIP2-ISP) gives ``as``. A file of another kind, a missing or corrupt one
is left out with one log line and a count in ``flowsink_enrich_geoip_errors_total``; the flows go on without
what it would have added.

Lookups run only on a miss of the address cache (``AddressCache``), but one costs the C extension's decoding of
the whole record into Python objects: tens of microseconds for a City record with its names in eight languages.
Every record belongs to a network (the prefix length the lookup returns), and any address inside it has the same
record, so the parts made here are kept per network: a new address of a network seen before costs a few dict
probes instead. ``maxminddb`` has no such cache, hence this one; it is bounded like the address cache.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from flowsink.log import get_logger

log = get_logger(__name__)

CITY, COUNTRY, ASN = "city", "country", "asn"
_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
_MEMO_LIMIT = 1 << 17  # networks remembered per database before the memo starts again


class Part(NamedTuple):
    """What one database gives an address: the value of ``geo`` or ``as`` and the same as JSON (the key of the
    entries made from it)."""

    value: dict[str, Any]
    json: bytes


def database_kind(database_type: str) -> str | None:
    """City, Country or ASN from a database's metadata ``database_type``; None for any other kind (Anonymous-IP,
    Connection-Type, Domain ...)."""
    kind = database_type.lower()
    if "asn" in kind or "isp" in kind:  # GeoLite2-ASN, GeoIP2-ISP, DBIP-ASN-Lite (compat=GeoLite2-ASN)
        return ASN
    if "city" in kind or "enterprise" in kind:  # GeoIP2-Enterprise has the City database's fields
        return CITY
    if "country" in kind:
        return COUNTRY
    return None


def _name(item: Any) -> str | None:
    names = item.get("names") if isinstance(item, dict) else None
    name = names.get("en") if isinstance(names, dict) else None
    return name if isinstance(name, str) and name else None


def _code(item: Any, key: str = "iso_code") -> str | None:
    code = item.get(key) if isinstance(item, dict) else None
    return code if isinstance(code, str) and code else None


def geo_value(record: Any) -> dict[str, Any]:
    """``geo`` from a City or Country record, as Elasticsearch's geoip processor names the fields (ECS)."""
    if not isinstance(record, dict):
        return {}
    geo: dict[str, Any] = {}
    continent = record.get("continent")
    if (code := _code(continent, "code")) is not None:
        geo["continent_code"] = code
    if (name := _name(continent)) is not None:
        geo["continent_name"] = name
    country = record.get("country")
    country_code = _code(country)
    if country_code is not None:
        geo["country_iso_code"] = country_code
    if (name := _name(country)) is not None:
        geo["country_name"] = name
    subdivisions = record.get("subdivisions")
    if isinstance(subdivisions, list) and subdivisions:
        region = subdivisions[0]
        code = _code(region)
        if code is not None and country_code is not None:  # ISO 3166-2, as the geoip processor writes it
            geo["region_iso_code"] = f"{country_code}-{code}"
        if (name := _name(region)) is not None:
            geo["region_name"] = name
    if (name := _name(record.get("city"))) is not None:
        geo["city_name"] = name
    location = record.get("location")
    if isinstance(location, dict):
        lat, lon = location.get("latitude"), location.get("longitude")
        if _degrees(lat, 90) and _degrees(lon, 180):
            geo["location"] = {"lat": lat, "lon": lon}
    return geo


def _degrees(value: Any, bound: float) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and -bound <= value <= bound
    )


def as_value(record: Any) -> dict[str, Any]:
    """``as`` from an ASN (or ISP) record: ``number`` and ``organization.name``, as ECS and the geoip processor."""
    if not isinstance(record, dict):
        return {}
    number = record.get("autonomous_system_number")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 1 << 32:
        return {}
    value: dict[str, Any] = {"number": number}
    organization = record.get("autonomous_system_organization")
    if isinstance(organization, str) and organization:
        value["organization"] = {"name": organization}
    return value


class Database:
    """One open database: its kind, and ``part(packed)``, the ``geo`` or ``as`` of an address (None: nothing).

    ``count_error(reason, detail)`` is told of every lookup that failed (the flow goes on without the part).
    """

    def __init__(self, reader: Any, kind: str, source: str, count_error: Callable[[str, str], None]):
        self.reader = reader
        self.kind = kind
        self.source = source
        metadata = reader.metadata()
        self.database_type: str = metadata.database_type
        self.build_epoch: int = metadata.build_epoch
        self.ip_version: int = metadata.ip_version
        self._value = as_value if kind == ASN else geo_value
        self._count_error = count_error
        # (network bits, prefix length, family) packed in one int -> the part of every address in it
        self._memo: dict[int, Part | None] = {}
        self._lengths: dict[int, list[int]] = {4: [], 16: []}  # prefix lengths seen, per address length
        self._parts: dict[bytes, Part] = {}  # one object per distinct value

    def part(self, packed: bytes) -> Part | None:
        size = len(packed)
        bits = size * 8
        value = int.from_bytes(packed, "big")
        memo = self._memo
        lengths = self._lengths[size]
        for position, length in enumerate(lengths):
            key = (value >> (bits - length)) << 16 | length << 8 | size
            if key in memo:
                if position:  # the lengths that answer most come first: a /24 database answers in one probe
                    lengths[position - 1], lengths[position] = length, lengths[position - 1]
                return memo[key]
        if size == 16 and self.ip_version == 4:
            self._count_error(
                "wrong_family", f"{self.source} holds IPv4 addresses only, asked for an IPv6 one"
            )
            return None
        text = socket.inet_ntop(socket.AF_INET if size == 4 else socket.AF_INET6, packed)
        try:
            record, length = self.reader.get_with_prefix_len(text)
        except ValueError as exc:  # the extension's word for an address of the wrong family
            self._count_error("wrong_family", f"{self.source}: {exc}")
            return None
        except Exception as exc:  # InvalidDatabaseError: a corrupt data section shows only on lookups
            reason = "corrupt" if type(exc).__name__ == "InvalidDatabaseError" else "lookup_error"
            self._count_error(reason, f"{self.source}: looking up {text}: {exc}")
            return None
        found = self._value(record)
        part = None
        if found:
            rendered = orjson.dumps(found)
            part = self._parts.setdefault(rendered, Part(found, rendered))
        if not 0 <= length <= bits:
            return part
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
            self._parts.clear()
        memo[(value >> (bits - length)) << 16 | length << 8 | size] = part
        if length not in self._lengths[size]:
            self._lengths[size].append(length)
        return part

    def close(self) -> None:
        try:
            self.reader.close()
        except Exception as exc:  # closing what failed to work must not fail too
            log.debug("closing %s: %s", self.source, exc)


class OpenFailure(Exception):
    """A database that cannot be used: ``reason`` (one of ERROR_REASONS) and a message naming the file."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def open_database(path: str, source: str, count_error: Callable[[str, str], None]) -> Database:
    """``path`` opened with the maxminddb C extension (memory-mapped); ``source`` names it in messages (the
    configured path when ``path`` is its snapshot). Raises OpenFailure."""
    try:
        import maxminddb
        from maxminddb.errors import InvalidDatabaseError
    except ImportError:
        raise OpenFailure(
            "no_extension", "the maxminddb package is not installed (pip install 'flowsink[geoip]')"
        ) from None
    try:
        reader = maxminddb.open_database(path, maxminddb.MODE_MMAP_EXT)
    except FileNotFoundError:
        raise OpenFailure("missing", f"{source}: no such file") from None
    except ImportError:  # MODE_MMAP_EXT without the compiled extension: the pure-Python reader is far slower
        raise OpenFailure("no_extension", "maxminddb's C extension is not available (libmaxminddb)") from None
    except InvalidDatabaseError as exc:
        raise OpenFailure("corrupt", f"{source}: not a MaxMind DB file ({exc})") from None
    except OSError as exc:
        raise OpenFailure("unreadable", f"{source}: {exc.strerror or exc}") from None
    except ValueError as exc:  # what the extension raises for some damaged metadata
        raise OpenFailure("corrupt", f"{source}: not a MaxMind DB file ({exc})") from None
    try:
        database_type = reader.metadata().database_type
    except Exception as exc:
        reader.close()
        raise OpenFailure("corrupt", f"{source}: unreadable metadata ({exc})") from None
    kind = database_kind(str(database_type))
    if kind is None:
        reader.close()
        raise OpenFailure(
            "unknown_kind",
            f"{source}: database type {database_type!r} is none of City, Country or ASN; left out",
        )
    return Database(reader, kind, source, count_error)


class GeoLookup:
    """The ``geo`` and ``as`` of an address from the open databases (the first database of a kind that knows the
    address gives it: list a City database before a Country one to prefer it)."""

    def __init__(self, databases: list[Database]):
        self.databases = databases
        self._geo = [d for d in databases if d.kind != ASN]
        self._as = [d for d in databases if d.kind == ASN]

    def lookup(self, packed: bytes) -> tuple[Part | None, Part | None]:
        if len(packed) == 16 and packed.startswith(_V4_MAPPED):  # ::ffff:a.b.c.d is a.b.c.d, as for locality
            packed = packed[12:]
        geo = asn = None
        for database in self._geo:
            geo = database.part(packed)
            if geo is not None:
                break
        for database in self._as:
            asn = database.part(packed)
            if asn is not None:
                break
        return geo, asn

    def close(self) -> None:
        for database in self.databases:
            database.close()
