"""NetFlow v9 / IPFIX templates: compiled record decoders, the per-exporter cache, data held before its template.

A template is compiled once into a record decoder: fixed-length templates become one precompiled
``struct.Struct`` run over the whole data set with ``iter_unpack`` (the common case, and the fast one);
templates with variable-length fields (IPFIX length 65535) fall back to a field-by-field walk.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import struct
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from flowsink.decode.fields import NETFLOW_V9_SCOPE_NAMES, field_info
from flowsink.native import EXTENSION

VARIABLE_LENGTH = 0xFFFF
CACHE_FORMAT_VERSION = 1

# Time elements, converted to epoch milliseconds by the normaliser: name -> unit
TIME_UNITS = {
    "dateTimeSeconds": "s",
    "dateTimeMilliseconds": "ms",
    "dateTimeMicroseconds": "ntp",
    "dateTimeNanoseconds": "ntp",
}

# elements that carry a sampling rate inside a flow record itself (instead of in options data)
SAMPLING_FIELDS = frozenset(
    {
        "sampling_interval",
        "sampler_random_interval",
        "sampling_flow_interval",
        "sampling_packet_interval",
        "sampling_population",
        "sampling_probability",
    }
)

_FIXED_CODES = {
    ("unsigned", 1): "B",
    ("unsigned", 2): "H",
    ("unsigned", 4): "I",
    ("unsigned", 8): "Q",
    ("signed", 1): "b",
    ("signed", 2): "h",
    ("signed", 4): "i",
    ("signed", 8): "q",
    ("float", 4): "f",
    ("float", 8): "d",
}


def _type_family(data_type: str) -> str:
    if data_type.startswith("unsigned") or data_type.startswith("dateTime"):
        return "unsigned"
    if data_type.startswith("signed"):
        return "signed"
    if data_type.startswith("float"):
        return "float"
    return data_type


def _hex(raw: bytes) -> str:
    return raw.hex()


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\x00").decode("utf-8", "replace")


# C functions called directly (no Python frame per address): only ever given exactly 4 / 16 bytes
_ipv4 = socket.inet_ntoa
_ipv6 = functools.partial(socket.inet_ntop, socket.AF_INET6)


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _unsigned(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _signed(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


# Variable-length integers carry their own length: past 8 bytes they would not fit JSON's 64-bit integers
# (orjson refuses them, Elasticsearch has no such type), so they are kept as hex, as fixed ones of that size.
def _unsigned_variable(raw: bytes) -> int | str:
    return int.from_bytes(raw, "big") if len(raw) <= 8 else raw.hex()


def _signed_variable(raw: bytes) -> int | str:
    return int.from_bytes(raw, "big", signed=True) if len(raw) <= 8 else raw.hex()


def _boolean(raw: bytes) -> bool | int:
    # RFC 7011 section 6.1.5: true is 1, false is 2; anything else is kept as the number it is
    value = raw[0] if raw else 0
    return True if value == 1 else False if value == 2 else value


def _float(raw: bytes) -> float | str:
    if len(raw) == 4:
        return struct.unpack("!f", raw)[0]
    if len(raw) == 8:
        return struct.unpack("!d", raw)[0]
    return raw.hex()


def converter_for(data_type: str, length: int) -> Callable[[bytes], Any]:
    """Function turning a field's raw octets (any length, reduced-size included) into a JSON-ready value."""
    family = _type_family(data_type)
    if length == VARIABLE_LENGTH and family in ("unsigned", "signed"):
        return _unsigned_variable if family == "unsigned" else _signed_variable
    if family == "unsigned":
        return _unsigned if 0 < length <= 8 else _hex
    if family == "signed":
        return _signed if 0 < length <= 8 else _hex
    if family == "float":
        return _float
    if data_type == "ipv4Address":
        return _ipv4 if length == 4 else _hex
    if data_type == "ipv6Address":
        return _ipv6 if length == 16 else _hex
    if data_type == "macAddress":
        return _mac
    if data_type == "string":
        return _text
    if data_type == "boolean":
        return _boolean
    return _hex  # octetArray, structured data (RFC 6313 lists: kept as octets), unknown elements


# value kinds of the C fixed_records (the numbering of template_records.c's enum)
(
    KIND_UNSIGNED,
    KIND_SIGNED,
    KIND_FLOAT32,
    KIND_FLOAT64,
    KIND_IPV4,
    KIND_IPV6,
    KIND_MAC,
    KIND_STRING,
    KIND_BOOLEAN,
    KIND_HEX,
    KIND_UNSIGNED_ANY,
    KIND_SIGNED_ANY,
    KIND_FLOAT_ANY,
) = range(13)


# field roles in a bulk layout (Template.compile_bulk_layout), bits as template_records.c's ROLE_*
BULK_NEEDED, BULK_TIMED, BULK_RELATIVE = 1, 2, 4


def c_kind(data_type: str, length: int) -> int:
    """The C extension's value kind for a field: the same value ``converter_for`` (or a struct code) gives."""
    family = _type_family(data_type)
    if length == VARIABLE_LENGTH and family in ("unsigned", "signed", "float"):
        # converter_for's _unsigned/_signed/_float on whatever length each record carries
        return {"unsigned": KIND_UNSIGNED_ANY, "signed": KIND_SIGNED_ANY, "float": KIND_FLOAT_ANY}[family]
    if family == "unsigned":
        return KIND_UNSIGNED if 0 < length <= 8 else KIND_HEX
    if family == "signed":
        return KIND_SIGNED if 0 < length <= 8 else KIND_HEX
    if family == "float":
        return {4: KIND_FLOAT32, 8: KIND_FLOAT64}.get(length, KIND_HEX)
    if data_type == "ipv4Address":
        return KIND_IPV4 if length == 4 else KIND_HEX
    if data_type == "ipv6Address":
        return KIND_IPV6 if length == 16 else KIND_HEX
    return {"macAddress": KIND_MAC, "string": KIND_STRING, "boolean": KIND_BOOLEAN}.get(data_type, KIND_HEX)


# generated record builders shared by every template with the same layout (exporters re-send the same few)
MAX_BUILDERS = 4096
MAX_GENERATED_FIELDS = 512
_BUILDERS: dict[tuple[Any, ...], Callable[[Iterable[tuple[Any, ...]]], list[dict[str, Any]]]] = {}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a template as the exporter sent it."""

    element_id: int
    length: int
    enterprise: int = 0


class Template:
    """A compiled template: field names, record length, and a record decoder specialised to its layout."""

    __slots__ = (
        "_converters",
        "_empty",
        "_fixed_decoder",
        "_layout",
        "_struct",
        "_variable_layout",
        "bulk_layout",
        "fields",
        "has_sampling_fields",
        "is_options",
        "last_seen_ns",
        "names",
        "netflow_v9",
        "record_length",
        "scope_count",
        "template_id",
        "time_fields",
    )

    def __init__(
        self,
        template_id: int,
        fields: Iterable[FieldSpec],
        scope_count: int = 0,
        is_options: bool = False,
        netflow_v9: bool = False,
        last_seen_ns: int = 0,
    ) -> None:
        self.template_id = template_id
        self.fields = tuple(fields)
        self.scope_count = scope_count
        self.is_options = is_options
        self.netflow_v9 = netflow_v9
        self.last_seen_ns = last_seen_ns
        self._compile()

    def _field_name(self, index: int, spec: FieldSpec) -> tuple[str, str]:
        if self.netflow_v9 and index < self.scope_count:
            name = NETFLOW_V9_SCOPE_NAMES.get(spec.element_id, f"scope_{spec.element_id}")
            return name, "unsigned32" if spec.element_id != 5 else "unsigned16"
        info = field_info(spec.element_id, spec.enterprise, self.netflow_v9)
        return info.name, info.data_type

    def _compile(self) -> None:
        names: list[str] = []
        converters: list[tuple[int, Callable[[bytes], Any]] | None] = []
        codes = ["!"]
        time_fields: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        variable = False
        for index, spec in enumerate(self.fields):
            name, data_type = self._field_name(index, spec)
            if name in seen:  # a repeated element keeps every value: name, name_2, name_3 ...
                seen[name] += 1
                name = f"{name}_{seen[name]}"
            else:
                seen[name] = 1
            # interned: the C decoders look fields up by interned names, and a dict lookup by the same object
            # skips comparing the text
            name = sys.intern(name)
            names.append(name)
            if data_type in TIME_UNITS:
                time_fields.append((name, TIME_UNITS[data_type]))
            if spec.length == VARIABLE_LENGTH:
                variable = True
            code = _FIXED_CODES.get((_type_family(data_type), spec.length))
            if code is not None and data_type != "boolean":
                codes.append(code)
                converters.append(None)
            else:
                codes.append(f"{spec.length}s" if spec.length != VARIABLE_LENGTH else "")
                converters.append((index, converter_for(data_type, spec.length)))
        self.names = tuple(names)
        # 0-length fields carry nothing (seen from some NetFlow v9 exporters): left out of the records
        self._empty = tuple(name for name, spec in zip(names, self.fields, strict=True) if spec.length == 0)
        self.has_sampling_fields = not SAMPLING_FIELDS.isdisjoint(names)
        self.time_fields = tuple(time_fields)
        self._converters = tuple(c for c in converters if c is not None)
        if variable:
            self.record_length = None
            self._struct = None
        else:
            self._struct = struct.Struct("".join(codes))
            self.record_length = self._struct.size
        self._layout: tuple[tuple[str, int, int, int], ...] | None = None  # C extension's, on first use
        self.bulk_layout: tuple[tuple[str, int, int, int, int, bytes], ...] | None = (
            None  # compile_bulk_layout
        )
        self._variable_layout: tuple[tuple[str, int, int], ...] | None = None
        self._fixed_decoder = None  # generated on first use: a flood of templates costs no compiling
        # variable-length walks need a converter for every field
        if variable:
            self._converters = tuple(
                (i, converter_for(self._field_name(i, spec)[1], spec.length))
                for i, spec in enumerate(self.fields)
            )

    @property
    def min_record_length(self) -> int:
        """Smallest possible record (variable-length fields count their 1-byte length prefix)."""
        return sum(1 if spec.length == VARIABLE_LENGTH else spec.length for spec in self.fields)

    def decode_records(self, data: bytes, start: int, end: int) -> tuple[list[dict[str, Any]], str | None]:
        """Records in ``data[start:end]``; trailing bytes shorter than a record are padding (RFC 3954/7011).

        Returns (records, error reason or None); a malformed variable-length record stops the set there
        and keeps the records before it.
        """
        if self._struct is not None:
            records, error = self._decode_fixed(data, start, end), None
        else:
            records, error = self._decode_variable(data, start, end)
        if self._empty:
            for record in records:
                for name in self._empty:
                    record.pop(name, None)
        return records, error

    def _decode_fixed(self, data: bytes, start: int, end: int) -> list[dict[str, Any]]:
        length = self.record_length
        if not length:
            return []
        count = (end - start) // length
        if count <= 0:
            return []
        if EXTENSION is not None:
            # the C extension reads the fields straight from the bytes (tests/test_decode_fast.py: same records)
            layout = self._layout or self._c_layout()
            return EXTENSION.fixed_records(data, start, count, length, layout)
        build = self._fixed_decoder or self._specialise()
        return build(self._struct.iter_unpack(memoryview(data)[start : start + count * length]))

    def _c_layout(self) -> tuple[tuple[str, int, int, int], ...]:
        """(name, offset, length, kind) of every field the records carry (0-length ones carry nothing)."""
        layout = []
        offset = 0
        for index, spec in enumerate(self.fields):
            if spec.length:
                data_type = self._field_name(index, spec)[1]
                layout.append((self.names[index], offset, spec.length, c_kind(data_type, spec.length)))
            offset += spec.length
        self._layout = tuple(layout)
        return self._layout

    def compile_bulk_layout(
        self,
        needed: frozenset[str],
        relative: frozenset[str],
    ) -> tuple[tuple[str, int, int, int, int, bytes], ...]:
        """The C bulk writer's layout of a fixed-length template: ``_c_layout``'s fields, each one's role (BULK_*
        bits: the ECS values are computed from it (``needed``: it is read into a dict for them), it is a dateTime
        element, it is one of ``relative``, the elements relative times come from) and its ``"name":`` text."""
        timed = {name for name, _ in self.time_fields}
        self.bulk_layout = tuple(
            (
                name,
                offset,
                length,
                kind,
                (BULK_NEEDED if name in needed else 0)
                | (BULK_TIMED if name in timed else 0)
                | (BULK_RELATIVE if name in relative else 0),
                orjson.dumps(name) + b":",
            )
            for name, offset, length, kind in (self._layout or self._c_layout())
        )
        return self.bulk_layout

    def _specialise(self) -> Callable[[Iterable[tuple[Any, ...]]], list[dict[str, Any]]]:
        """Generate this layout's record builder: one dict display per record, converters called inline.

        Generated code because a dict display with constant keys is several times faster than
        ``dict(zip(names, values))`` plus a converter loop, and records are the hot path. Only our own
        identifiers reach the source text (keys go through ``repr``, converters are looked up by index).
        """
        converters = dict(self._converters)
        if len(self.names) > MAX_GENERATED_FIELDS:
            # no real exporter sends this many fields; a hostile one should not make us compile megabytes
            self._fixed_decoder = self._generic_builder
            return self._generic_builder
        layout = (self.names, tuple(converters.items()))
        cached = _BUILDERS.get(layout)
        if cached is not None:
            self._fixed_decoder = cached
            return cached
        namespace: dict[str, Any] = {f"_c{i}": convert for i, convert in converters.items()}
        variables = [f"v{i}" for i in range(len(self.names))]
        items = ", ".join(
            f"{name!r}: _c{i}({variables[i]})" if i in converters else f"{name!r}: {variables[i]}"
            for i, name in enumerate(self.names)
        )
        unpack = ", ".join(variables) + ("," if len(variables) == 1 else "")
        source = f"def build(rows):\n    return [{{{items}}} for {unpack} in rows]\n"
        exec(compile(source, f"<template {self.template_id}>", "exec"), namespace)
        build = namespace["build"]
        if len(_BUILDERS) >= MAX_BUILDERS:
            _BUILDERS.pop(next(iter(_BUILDERS)))
        _BUILDERS[layout] = self._fixed_decoder = build
        return build

    def _generic_builder(self, rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
        names = self.names
        converters = self._converters
        records = []
        for values in rows:
            values = list(values)
            for index, convert in converters:
                values[index] = convert(values[index])
            records.append(dict(zip(names, values, strict=True)))
        return records

    def _decode_variable(self, data: bytes, start: int, end: int) -> tuple[list[dict[str, Any]], str | None]:
        minimum = max(self.min_record_length, 1)
        if EXTENSION is not None:  # the same walk in C (tests/test_decode_fast.py)
            if self._variable_layout is None:
                self._variable_layout = tuple(
                    (
                        self.names[i],
                        -1 if spec.length == VARIABLE_LENGTH else spec.length,
                        c_kind(self._field_name(i, spec)[1], spec.length),
                    )
                    for i, spec in enumerate(self.fields)
                )
            return EXTENSION.variable_records(data, start, end, minimum, self._variable_layout)
        return self._decode_variable_python(data, start, end)

    def _decode_variable_python(
        self, data: bytes, start: int, end: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        records = []
        fields = self.fields
        names = self.names
        converters = self._converters
        minimum = max(self.min_record_length, 1)
        offset = start
        while end - offset >= minimum:
            record: dict[str, Any] = {}
            for (index, convert), spec in zip(converters, fields, strict=True):
                length = spec.length
                if length == VARIABLE_LENGTH:
                    if offset >= end:
                        return records, "truncated_record"
                    length = data[offset]
                    offset += 1
                    if length == 255:
                        if offset + 2 > end:
                            return records, "truncated_record"
                        length = (data[offset] << 8) | data[offset + 1]
                        offset += 2
                if offset + length > end:
                    return records, "truncated_record"
                record[names[index]] = convert(bytes(data[offset : offset + length]))
                offset += length
            records.append(record)
        return records, None

    def to_json(self) -> dict[str, Any]:
        return {
            "template_id": self.template_id,
            "fields": [[f.element_id, f.length, f.enterprise] for f in self.fields],
            "scope_count": self.scope_count,
            "is_options": self.is_options,
        }


@dataclass(slots=True)
class ExporterOptions:
    """What options data told us about one (exporter, domain): sampling rates and interface names."""

    sampling: dict[int | None, int] = field(default_factory=dict)  # sampler/selector id (None: all) -> rate
    interfaces: dict[int, str] = field(default_factory=dict)  # ifIndex -> name
    system_init_ms: int | None = None  # IPFIX systemInitTimeMilliseconds
    last_seen_ns: int = 0


StateKey = tuple[str, str, int]  # (protocol, exporter address, source id / observation domain)
# where a template a store lacks may be found, with the exporter's options state there (see TemplateStore.adopt)
TemplateSource = Callable[[StateKey, int], "tuple[Template, ExporterOptions | None] | None"]


class TemplateStore:
    """Templates and options state per (protocol, exporter, domain), bounded and LRU-evicted.

    Templates live until ``template_expiry_seconds`` without being re-sent; at most
    ``max_templates_per_exporter`` per domain and ``max_exporters`` domains are kept (evictions are counted).
    """

    def __init__(self, max_templates: int = 1024, max_domains: int = 10_000, expiry_seconds: float = 86400.0):
        self.max_templates = max_templates
        self.max_domains = max_domains
        self.expiry_ns = int(expiry_seconds * 1e9)
        self.templates: OrderedDict[StateKey, OrderedDict[int, Template]] = OrderedDict()
        self.options: dict[StateKey, ExporterOptions] = {}
        self.evictions = 0
        # Set by the pipeline: the templates the node's other partitions saved. An exporter that SO_REUSEPORT moves
        # to another receiver (after a receiver restart) brings its data to a worker that never saw its templates.
        self.fallback: TemplateSource | None = None

    def get(self, key: StateKey, template_id: int) -> Template | None:
        domain = self.templates.get(key)
        return domain.get(template_id) if domain is not None else None

    def adopt(self, key: StateKey, template_id: int) -> Template | None:
        """A template this store lacks but ``fallback`` knows, stored here from now on, with the exporter's options
        state (sampling rates, interface names) when this store has none yet; None when nowhere known."""
        found = self.fallback(key, template_id) if self.fallback is not None else None
        if found is None:
            return None
        template, options = found
        self.add(key, template)
        if options is not None and key not in self.options:
            state = self.options_for(key)
            state.sampling.update(options.sampling)
            state.interfaces.update(options.interfaces)
            state.system_init_ms = options.system_init_ms
            state.last_seen_ns = options.last_seen_ns
        return template

    def add(self, key: StateKey, template: Template) -> int:
        """Store (or replace) a template; returns how many templates were evicted to make room."""
        domain = self.templates.get(key)
        evicted = 0
        if domain is None:
            domain = self.templates[key] = OrderedDict()
            while len(self.templates) > self.max_domains:
                _, dropped = self.templates.popitem(last=False)
                evicted += len(dropped)
        else:
            self.templates.move_to_end(key)
        domain[template.template_id] = template
        domain.move_to_end(template.template_id)
        while len(domain) > self.max_templates:
            domain.popitem(last=False)
            evicted += 1
        self.evictions += evicted
        return evicted

    def withdraw(self, key: StateKey, template_id: int | None, options: bool | None = None) -> int:
        """Forget one template, or (template_id None) all data templates / all options templates."""
        domain = self.templates.get(key)
        if not domain:
            return 0
        if template_id is not None:
            return 1 if domain.pop(template_id, None) is not None else 0
        doomed = [tid for tid, t in domain.items() if options is None or t.is_options == options]
        for tid in doomed:
            del domain[tid]
        return len(doomed)

    def options_for(self, key: StateKey) -> ExporterOptions:
        state = self.options.get(key)
        if state is None:
            if len(self.options) >= self.max_domains:
                self.options.pop(next(iter(self.options)))
            state = self.options[key] = ExporterOptions()
        return state

    def expire(self, now_ns: int, protocol: str | None = None) -> int:
        """Drop templates and options state not refreshed for ``expiry_seconds`` (of one protocol, or all);
        returns how many templates were dropped."""
        cutoff = now_ns - self.expiry_ns
        dropped = 0
        for key in list(self.templates):
            if protocol is not None and key[0] != protocol:
                continue
            domain = self.templates[key]
            for tid in [tid for tid, t in domain.items() if t.last_seen_ns < cutoff]:
                del domain[tid]
                dropped += 1
            if not domain:
                del self.templates[key]
        for key in [
            k
            for k, state in self.options.items()
            if state.last_seen_ns < cutoff and (protocol is None or k[0] == protocol)
        ]:
            del self.options[key]
        return dropped

    def count(self) -> int:
        return sum(len(domain) for domain in self.templates.values())

    def save(self, path: str, now_ns: int | None = None) -> None:
        """Write the cache atomically: temp file in the same directory, fsync, rename, fsync the directory.

        Last-seen times are stored as wall-clock epoch nanoseconds (``arrival_ns`` is wall-clock time).
        """
        entries = []
        for (protocol, exporter, domain_id), domain in self.templates.items():
            for template in domain.values():
                entry = template.to_json()
                entry.update(
                    protocol=protocol, exporter=exporter, domain=domain_id, last_seen_ns=template.last_seen_ns
                )
                entries.append(entry)
        options = [
            {
                "protocol": p,
                "exporter": e,
                "domain": d,
                "last_seen_ns": state.last_seen_ns,
                "sampling": [[sid, rate] for sid, rate in state.sampling.items()],
                "interfaces": [[index, name] for index, name in state.interfaces.items()],
            }
            for (p, e, d), state in self.options.items()
        ]
        document = {
            "version": CACHE_FORMAT_VERSION,
            "saved_ns": now_ns or time.time_ns(),
            "templates": entries,
            "options": options,
        }
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, temp_path = tempfile.mkstemp(prefix=".templates-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(orjson.dumps(document))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_path, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load(self, path: str, now_ns: int | None = None) -> int:
        """Load a cache written by ``save``, skipping entries older than the expiry; returns templates loaded.

        A missing file loads nothing; an unreadable one raises ValueError (the caller logs it and starts empty).
        """
        try:
            with open(path, "rb") as handle:
                document = orjson.loads(handle.read())
        except FileNotFoundError:
            return 0
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"template cache {path} unreadable: {exc}") from exc
        if not isinstance(document, dict) or document.get("version") != CACHE_FORMAT_VERSION:
            raise ValueError(f"template cache {path}: unknown format")
        cutoff = (now_ns or time.time_ns()) - self.expiry_ns
        loaded = 0
        try:
            for entry in document.get("templates", []):
                if entry["last_seen_ns"] < cutoff:
                    continue
                template = Template(
                    entry["template_id"],
                    (FieldSpec(*spec) for spec in entry["fields"]),
                    entry["scope_count"],
                    entry["is_options"],
                    entry["protocol"] == "netflow_v9",
                    entry["last_seen_ns"],
                )
                self.add((entry["protocol"], entry["exporter"], entry["domain"]), template)
                loaded += 1
            for entry in document.get("options", []):
                if entry["last_seen_ns"] < cutoff:
                    continue
                state = self.options_for((entry["protocol"], entry["exporter"], entry["domain"]))
                state.last_seen_ns = entry["last_seen_ns"]
                state.sampling.update((sid, rate) for sid, rate in entry["sampling"])
                state.interfaces.update((index, name) for index, name in entry["interfaces"])
        except (KeyError, TypeError, ValueError, struct.error) as exc:
            raise ValueError(f"template cache {path}: malformed entry: {exc}") from exc
        return loaded


@dataclass(slots=True)
class HeldSet:
    """A data set that arrived before its template, with what is needed to decode it later identically."""

    template_id: int
    payload: bytes
    context: Any  # the datagram's header context (exporter, times, sequence ...)
    set_index: int  # position of the set in its datagram (for deterministic document ids)
    arrival_ns: int


class PendingSets:
    """Data held before its template, bounded in bytes (all exporters together) and in age."""

    def __init__(self, max_bytes: int, max_seconds: float) -> None:
        self.max_bytes = max_bytes
        self.max_age_ns = int(max_seconds * 1e9)
        self.held: OrderedDict[tuple[StateKey, int], list[HeldSet]] = OrderedDict()
        self.bytes = 0

    def hold(self, key: StateKey, held: HeldSet) -> list[tuple[StateKey, HeldSet]]:
        """Hold a set; returns the sets dropped to stay under the byte bound (oldest first; the set itself when
        it alone is larger than the bound)."""
        if len(held.payload) > self.max_bytes:
            return [(key, held)]
        self.held.setdefault((key, held.template_id), []).append(held)
        self.bytes += len(held.payload)
        dropped = []
        while self.bytes > self.max_bytes and self.held:
            dropped.append(self._drop_oldest())
        return dropped

    def _drop_oldest(self) -> tuple[StateKey, HeldSet]:
        slot = next(iter(self.held))
        sets = self.held[slot]
        gone = sets.pop(0)
        self.bytes -= len(gone.payload)
        if not sets:
            del self.held[slot]
        return slot[0], gone

    def take(self, key: StateKey, template_id: int) -> list[HeldSet]:
        sets = self.held.pop((key, template_id), [])
        self.bytes -= sum(len(s.payload) for s in sets)
        return sets

    def expire(self, now_ns: int, protocol: str | None = None) -> list[tuple[StateKey, HeldSet]]:
        """Drop sets older than the age bound (of one protocol, or all); returns them."""
        cutoff = now_ns - self.max_age_ns
        expired = []
        for slot in list(self.held):
            if protocol is not None and slot[0][0] != protocol:
                continue
            sets = self.held[slot]
            keep = [s for s in sets if s.arrival_ns >= cutoff]
            expired += [(slot[0], s) for s in sets if s.arrival_ns < cutoff]
            self.bytes -= sum(len(s.payload) for s in sets if s.arrival_ns < cutoff)
            if keep:
                self.held[slot] = keep
            else:
                del self.held[slot]
        return expired

    def count(self) -> int:
        return sum(len(sets) for sets in self.held.values())
