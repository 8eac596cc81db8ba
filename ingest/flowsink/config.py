"""Configuration: one YAML file, ``FLOWSINK_<SECTION>_<KEY>`` environment overrides, validation at start.

Every section is a dataclass whose fields carry their defaults; adding a key is one field (with an optional
``meta(...)`` for bounds, choices or a help line). Values are coerced from the field's type hint, so YAML and
environment strings go through the same checks, and every error names the key and the value::

    from flowsink.config import load_config
    config = load_config("flowsink.yml")          # raises flowsink.errors.ConfigError
    config.elasticsearch.url, config.queue.max_bytes, config.pipeline.deterministic_ids

``flowsink check-config FILE`` validates a file and prints the effective settings (YAML) after overrides.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowsink.errors import ConfigError

ENV_PREFIX = "FLOWSINK_"

MIB = 1024 * 1024
GIB = 1024 * MIB


def meta(
    help: str = "",
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
    reloadable: bool = False,
    secret: bool = False,
) -> dict[str, Any]:
    """Field metadata: bounds, allowed values, whether SIGHUP may change it, whether to hide it when printed."""
    return {
        "help": help,
        "min": min,
        "max": max,
        "choices": choices,
        "reloadable": reloadable,
        "secret": secret,
    }


def _setting(default: Any, **kwargs: Any) -> Any:
    """A dataclass field with an immutable default and validation metadata (lists: ``field(default_factory=)``)."""
    return field(default=default, metadata=meta(**kwargs))


@dataclass
class NodeConfig:
    name: str = _setting("", help="node name in logs and metrics; empty means the host name")
    run_dir: str = _setting(
        ".run/node", help="state of this node: queue partitions, template cache, metrics files, dead letters"
    )


@dataclass
class ElasticsearchConfig:
    url: list[str] = field(
        default_factory=lambda: ["http://127.0.0.1:9200"],
        metadata=meta("one URL or a list; the env override takes a comma-separated list"),
    )
    username: str = _setting("", help="basic auth user (empty: none)")
    password: str = _setting("", secret=True, help="basic auth password")
    api_key: str = _setting("", secret=True, help="API key (base64 id:key), instead of basic auth")
    ca_certs: str = _setting("", help="CA bundle for https URLs")
    verify_certs: bool = _setting(True)
    request_timeout_s: float = _setting(60.0, min=1, help="timeout of one HTTP request to Elasticsearch")
    startup_timeout_s: float = _setting(
        30.0, min=0, help="how long `flowsink run` waits for Elasticsearch at start before giving up"
    )
    index_prefix: str = _setting(
        "flowsink", help="indices are <prefix>-flows-YYYY.MM.DD and <prefix>-meta-YYYY.MM.DD"
    )
    install_templates: bool = _setting(True, help="install the index templates at start-up")
    template_dir: str = _setting("", help="directory of template JSON files (empty: the packaged ones)")
    number_of_shards: int = _setting(1, min=1, max=1024)
    number_of_replicas: int = _setting(0, min=0, max=16)
    bulk_max_docs: int = _setting(
        5000, min=1, max=1_000_000, reloadable=True, help="documents per bulk request"
    )
    bulk_max_bytes: int = _setting(
        10 * MIB, min=1024, max=1 * GIB, reloadable=True, help="bytes per bulk request"
    )
    bulk_concurrency: int = _setting(2, min=1, max=64, help="bulk requests in flight per pipeline worker")
    retry_max_backoff_s: float = _setting(
        30.0, min=0.1, help="cap of the exponential backoff on 429/5xx/unreachable (retries never give up)"
    )
    dead_letter_path: str = _setting(
        "", help="file of documents Elasticsearch rejected (empty: <run_dir>/dead-letter.jsonl)"
    )


@dataclass
class ReceiveConfig:
    host: str = _setting("::", help="listen address; '::' listens on IPv6 and IPv4 (dual stack)")
    ports: list[int] = field(
        default_factory=lambda: [2055, 4739, 6343],
        metadata=meta("UDP ports; any port takes any protocol", min=1, max=65535),
    )
    processes: int = _setting(
        0, min=0, max=256, help="receiver processes (SO_REUSEPORT); 0 = number of cores"
    )
    rcvbuf_bytes: int = _setting(
        32 * MIB,
        min=64 * 1024,
        max=2 * GIB,
        help="SO_RCVBUF asked for; a warning is logged if the kernel caps it",
    )
    max_datagram_bytes: int = _setting(65535, min=512, max=65535)


@dataclass
class QueueConfig:
    dir: str = _setting(
        "", help="queue directory (empty: <run_dir>/queue); one partition per receiver process"
    )
    max_bytes: int = _setting(
        4 * GIB, min=1 * MIB, help="disk budget of the whole queue (split between partitions); full -> drops"
    )
    segment_bytes: int = _setting(64 * MIB, min=64 * 1024, max=4 * GIB)
    fsync_interval_ms: int = _setting(
        200, min=0, max=60_000, help="fsync at most this long after an append (0: every append)"
    )
    fsync_bytes: int = _setting(
        4 * MIB, min=0, help="fsync after this many appended bytes (0: no byte trigger)"
    )


@dataclass
class DecodeConfig:
    """Keys named like ``flowsink.decode.DecoderSettings`` fields are passed to it as they are."""

    renormalize: bool = _setting(
        True, help="multiply counters by the sampling rate into network.bytes/packets"
    )
    pending_max_bytes: int = _setting(
        8 * MIB, min=0, help="data held waiting for its template, per worker; beyond it the oldest expires"
    )
    pending_max_seconds: float = _setting(
        60.0, min=0, help="data held waiting for its template is counted as expired after this long"
    )
    template_expiry_seconds: float = _setting(
        24 * 3600.0, min=1, help="a template not re-sent this long is forgotten"
    )
    sequence_window: int = _setting(
        10_000, min=1, help="reordering tolerated before a sequence jump is a restart"
    )
    sequence_hole_max_age_s: float = _setting(
        10.0, min=0.1, help="a hole in an exporter's sequence numbers not filled this long is counted as lost"
    )
    max_templates_per_exporter: int = _setting(1024, min=1)
    max_exporters: int = _setting(10_000, min=1)
    template_cache_path: str = _setting(
        "", help="saved NetFlow v9/IPFIX templates (empty: <run_dir>/templates-<partition>.json)"
    )
    template_save_interval_s: float = _setting(30.0, min=1, help="how often the template cache is saved")
    expire_interval_s: float = _setting(1.0, min=0.05, help="how often held data is checked for expiry")


@dataclass
class PipelineConfig:
    deterministic_ids: bool = _setting(
        True,
        help="on: decoder ids + create (replays skip with 409); off: auto ids + index (faster, may duplicate)",
    )
    batch_max_datagrams: int = _setting(
        500, min=1, max=1_000_000, reloadable=True, help="datagrams read from the queue per batch"
    )
    batch_max_wait_ms: int = _setting(
        200, min=1, max=60_000, reloadable=True, help="how long a worker waits to fill a batch"
    )
    shutdown_timeout_s: float = _setting(
        30.0, min=0, help="on SIGTERM, how long to keep draining the queue and finishing bulks"
    )


@dataclass
class HttpConfig:
    host: str = _setting("0.0.0.0", help="address of /metrics, /healthz, /readyz and the flows API")
    port: int = _setting(8080, min=0, max=65535, help="0 picks a free port (logged)")


@dataclass
class ApiConfig:
    enabled: bool = _setting(True, help="serve POST /flows and GET /flows")
    index_prefix: str = _setting(
        "", help="indices of the flows API rows (empty: <elasticsearch.index_prefix>-app-flows)"
    )
    # Keys below: see docs/flows-api.md.
    tokens: list[str] = field(
        default_factory=list, metadata=meta("bearer tokens accepted (a list, for rotation)", secret=True)
    )
    auth_enabled: bool = _setting(True, help="false: no token needed; ANYBODY who reaches the port can write")
    body_limit_bytes: int = _setting(10 * MIB, min=1024, help="request body limit, also after gzip (413)")
    rows_limit: int = _setting(100_000, min=1, help="rows per POST (413)")
    rate_limit_rows_per_s: float = _setting(1_000_000.0, min=1, help="token bucket per credential (429)")
    rate_limit_burst_rows: int = _setting(2_000_000, min=1, help="token bucket size per credential")
    queue_dir: str = _setting("", help="write-ahead queue of accepted batches (empty: <queue dir>/api)")
    read_your_writes: bool = _setting(True, help="POST answers once its rows are visible to every GET")
    compact_interval_s: float = _setting(5.0, min=0.1, help="how often deltas are folded into totals")
    apply_timeout_s: float = _setting(10.0, min=0.1, help="POST waits this long for Elasticsearch, then 202")


@dataclass
class LoggingConfig:
    level: str = _setting("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), reloadable=True)
    format: str = _setting("text", choices=("text", "json"), help="json: one JSON object per line")
    rate_limit_interval_s: float = _setting(
        10.0, min=0, reloadable=True, help="per-packet errors: at most one line per reason per interval"
    )


@dataclass
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    elasticsearch: ElasticsearchConfig = field(default_factory=ElasticsearchConfig)
    receive: ReceiveConfig = field(default_factory=ReceiveConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: str = field(default="", metadata=meta(help="file the settings came from (not a setting)"))

    # -- derived paths, so every module resolves "empty means under run_dir" the same way --

    @property
    def run_dir(self) -> Path:
        return Path(self.node.run_dir)

    @property
    def queue_dir(self) -> Path:
        return Path(self.queue.dir) if self.queue.dir else self.run_dir / "queue"

    @property
    def dead_letter_path(self) -> Path:
        path = self.elasticsearch.dead_letter_path
        return Path(path) if path else self.run_dir / "dead-letter.jsonl"

    def api_index_prefix(self) -> str:
        """Where the flows API writes: ``api.index_prefix``, by default under the node's own index prefix so that
        one prefix names every index (and the templates installed for them) of a deployment."""
        return self.api.index_prefix or f"{self.elasticsearch.index_prefix}-app-flows"

    def template_cache_path(self, partition: int) -> Path:
        path = self.decode.template_cache_path
        if path:
            return (
                Path(path.replace("{partition}", str(partition)))
                if "{partition}" in path
                else Path(f"{path}.{partition}")
            )
        return self.run_dir / f"templates-{partition}.json"

    @property
    def receiver_processes(self) -> int:
        return self.receive.processes or os.cpu_count() or 1

    def to_dict(self, hide_secrets: bool = True) -> dict[str, Any]:
        """Effective settings as plain data (secrets shown as ``***`` unless asked otherwise)."""
        out: dict[str, Any] = {}
        for section_field in _sections():
            section = getattr(self, section_field.name)
            values: dict[str, Any] = {}
            for f in dataclasses.fields(section):
                value = getattr(section, f.name)
                if hide_secrets and f.metadata.get("secret") and value:
                    value = "***"
                values[f.name] = list(value) if isinstance(value, list) else value
            out[section_field.name] = values
        return out


def _sections() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.default_factory)]


SECTION_NAMES: tuple[str, ...] = tuple(f.name for f in _sections())


# ---------------------------------------------------------------- coercion and validation


def _field_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls)


def _is_optional(hint: Any) -> tuple[bool, Any]:
    """``X | None`` -> (True, X); anything else -> (False, hint)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return True, args[0]
    return False, hint


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce_scalar(key: str, value: Any, hint: type) -> Any:
    """One value to ``hint`` (bool, int, float, str); strings from the environment are parsed."""
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int or hint is float:
        number = _coerce_number(value, hint)
        if number is None:
            raise ConfigError(f"{key}: expected {'an integer' if hint is int else 'a number'}, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")


def _coerce_number(value: Any, hint: type) -> int | float | None:
    """``value`` as ``hint`` (int or float), or None when it is not one; strings are parsed (sizes for int)."""
    if isinstance(value, bool):
        return None
    if hint is float:
        if isinstance(value, int | float):
            return float(value)
    elif isinstance(value, int):
        return value
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return _parse_int(value) if hint is int else float(value)
        except ValueError:
            return None
    return None


_SIZE_SUFFIXES = {"k": 1024, "m": MIB, "g": GIB, "t": 1024 * GIB}


def _parse_int(text: str) -> int:
    """``"4096"``, ``"64k"``, ``"64MiB"``, ``"4G"``, ``"1_000"``: sizes accept binary suffixes."""
    cleaned = text.strip().lower().replace("_", "")
    for tail in ("ib", "b"):
        if cleaned.endswith(tail) and len(cleaned) > len(tail) and not cleaned[: -len(tail)].isdigit():
            cleaned = cleaned[: -len(tail)]
            break
    if cleaned and cleaned[-1] in _SIZE_SUFFIXES:
        return int(float(cleaned[:-1]) * _SIZE_SUFFIXES[cleaned[-1]])
    return int(cleaned)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    optional, inner = _is_optional(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: a value is required, got null")
    if typing.get_origin(inner) is list:
        (item_hint,) = typing.get_args(inner)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        elif not isinstance(value, list):
            value = [value]
        return [_coerce_scalar(f"{key}[{i}]", item, item_hint) for i, item in enumerate(value)]
    return _coerce_scalar(key, value, inner)


def _check_bounds(key: str, value: Any, f: dataclasses.Field) -> None:
    items = value if isinstance(value, list) else [value]
    low, high, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
    for item in items:
        if item is None:
            continue
        if low is not None and item < low:
            raise ConfigError(f"{key}: must be >= {low:g}, got {item!r}")
        if high is not None and item > high:
            raise ConfigError(f"{key}: must be <= {high:g}, got {item!r}")
        if choices and item not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {item!r}")


def _normalise(section: str, name: str, value: Any) -> Any:
    """Spellings users reasonably type: log levels in any case."""
    if section == "logging" and name == "level" and isinstance(value, str):
        return value.upper()
    if section == "logging" and name == "format" and isinstance(value, str):
        return value.lower()
    return value


def _build_section(section_name: str, cls: type, raw: Mapping[str, Any]) -> Any:
    hints = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{section_name}.{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{section_name}.{name}"
        coerced = _normalise(section_name, name, _coerce(key, value, hints[name]))
        _check_bounds(key, coerced, fields[name])
        values[name] = coerced
    return cls(**values)


def _check_cross_field(config: Config) -> None:
    """Rules that involve more than one key."""
    for url in config.elasticsearch.url:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"elasticsearch.url: expected http:// or https:// URLs, got {url!r}")
    if not config.elasticsearch.url:
        raise ConfigError("elasticsearch.url: at least one URL is required, got []")
    if not config.receive.ports:
        raise ConfigError("receive.ports: at least one UDP port is required, got []")
    if len(set(config.receive.ports)) != len(config.receive.ports):
        raise ConfigError(f"receive.ports: a port is listed twice, got {config.receive.ports!r}")
    prefix = config.elasticsearch.index_prefix
    if not prefix or prefix != prefix.lower() or any(c in prefix for c in ' "*\\<|,>/?#:'):
        raise ConfigError(
            f"elasticsearch.index_prefix: must be a non-empty lower-case index name, got {prefix!r}"
        )
    if config.queue.segment_bytes > config.queue.max_bytes:
        raise ConfigError(
            f"queue.segment_bytes: must not exceed queue.max_bytes ({config.queue.max_bytes}), "
            f"got {config.queue.segment_bytes}"
        )
    if not config.node.run_dir:
        raise ConfigError("node.run_dir: a directory is required, got ''")


# ---------------------------------------------------------------- loading


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
    return data


def env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``FLOWSINK_<SECTION>_<KEY>=value`` -> ``{section: {key: value}}``.

    Only names that match a known section are read, so unrelated ``FLOWSINK_*`` variables (``FLOWSINK_RUN_DIR``
    used by scripts) are ignored; an unknown key inside a known section is an error, because it is a typo.
    """
    sections = sorted(SECTION_NAMES, key=len, reverse=True)
    found: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section in sections:
            if rest.startswith(section + "_"):
                found.setdefault(section, {})[rest[len(section) + 1 :]] = value
                break
    return found


def _merge(file_data: dict[str, Any], overrides: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for section, values in file_data.items():
        if section not in SECTION_NAMES:
            raise ConfigError(f"{section}: unknown section (known: {', '.join(SECTION_NAMES)})")
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a mapping of keys, got {values!r}")
        merged[section] = dict(values)
    for section, values in overrides.items():
        for key, value in values.items():
            section_cls = type(getattr(Config(), section))
            if key not in {f.name for f in dataclasses.fields(section_cls)}:
                raise ConfigError(
                    f"{ENV_PREFIX}{section.upper()}_{key.upper()}: unknown key {section}.{key} in the environment"
                )
            merged.setdefault(section, {})[key] = value
    return merged


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (None: defaults only), apply environment overrides, validate; raises ``ConfigError``."""
    file_data = _read_yaml(Path(path)) if path is not None else {}
    merged = _merge(file_data, env_overrides(os.environ if env is None else env))
    sections = {}
    for section_field in _sections():
        cls = section_field.default_factory
        sections[section_field.name] = _build_section(
            section_field.name, cls, merged.get(section_field.name, {})
        )
    config = Config(**sections, source=str(path) if path is not None else "")
    _check_cross_field(config)
    return config


def reloadable_changes(old: Config, new: Config) -> tuple[dict[str, Any], list[str]]:
    """Compare two configs: ({"section.key": new_value} safe to apply live, ["section.key", ...] needing a restart)."""
    apply: dict[str, Any] = {}
    restart: list[str] = []
    for section_field in _sections():
        old_section, new_section = getattr(old, section_field.name), getattr(new, section_field.name)
        for f in dataclasses.fields(old_section):
            before, after = getattr(old_section, f.name), getattr(new_section, f.name)
            if before == after:
                continue
            key = f"{section_field.name}.{f.name}"
            if f.metadata.get("reloadable"):
                apply[key] = after
            else:
                restart.append(key)
    return apply, restart


def apply_reloadable(config: Config, new: Config) -> tuple[dict[str, Any], list[str]]:
    """Copy the reloadable settings of ``new`` into ``config`` (in place); same return as ``reloadable_changes``."""
    apply, restart = reloadable_changes(config, new)
    for key, value in apply.items():
        section, name = key.split(".", 1)
        setattr(getattr(config, section), name, value)
    return apply, restart


def describe() -> list[tuple[str, str, Any, str, bool]]:
    """Every key: (``section.key``, env variable, default, help, reloadable) for the operations reference."""
    rows = []
    defaults = Config()
    for section_field in _sections():
        section = getattr(defaults, section_field.name)
        for f in dataclasses.fields(section):
            rows.append(
                (
                    f"{section_field.name}.{f.name}",
                    f"{ENV_PREFIX}{section_field.name.upper()}_{f.name.upper()}",
                    getattr(section, f.name),
                    f.metadata.get("help", ""),
                    bool(f.metadata.get("reloadable")),
                )
            )
    return rows


# ---------------------------------------------------------------- flowsink check-config

HELP = "validate a configuration file and print the effective settings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", nargs="?", help="YAML configuration file (omit: defaults and environment only)"
    )
    parser.add_argument(
        "--check-es", action="store_true", help="also check that Elasticsearch answers at elasticsearch.url"
    )
    parser.add_argument(
        "--show-secrets", action="store_true", help="print passwords and API keys as they are"
    )


def check_elasticsearch(config: Config, timeout_s: float | None = None) -> str:
    """Ask the cluster for its health; returns ``"<status> (<n> nodes)"`` or raises ``ConfigError``."""
    es = elasticsearch_client(config, request_timeout=timeout_s or config.elasticsearch.request_timeout_s)
    try:
        health = es.cluster.health(timeout=f"{max(1, int(timeout_s or 5))}s")
    except Exception as exc:
        urls = ", ".join(config.elasticsearch.url)
        raise ConfigError(f"elasticsearch.url: cannot reach Elasticsearch at {urls}: {_short(exc)}") from None
    finally:
        es.close()
    return f"{health['status']} ({health['number_of_nodes']} nodes)"


def elasticsearch_client(config: Config, **overrides: Any):
    """An elasticsearch-py client built from the ``elasticsearch`` section (auth, TLS, timeouts)."""
    from elasticsearch import Elasticsearch

    return Elasticsearch(config.elasticsearch.url, **elasticsearch_client_kwargs(config, **overrides))


def elasticsearch_client_kwargs(config: Config, **overrides: Any) -> dict[str, Any]:
    """Client arguments (auth, TLS, timeouts) for elasticsearch-py, sync or async."""
    section = config.elasticsearch
    kwargs: dict[str, Any] = {"request_timeout": section.request_timeout_s}
    if section.api_key:
        kwargs["api_key"] = section.api_key
    elif section.username:
        kwargs["basic_auth"] = (section.username, section.password)
    if section.ca_certs:
        kwargs["ca_certs"] = section.ca_certs
    if any(u.startswith("https://") for u in section.url):
        kwargs["verify_certs"] = section.verify_certs
    kwargs.update(overrides)
    return kwargs


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def main(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    yaml.safe_dump(config.to_dict(hide_secrets=not args.show_secrets), sys.stdout, sort_keys=False)
    if args.check_es:
        status = check_elasticsearch(config)
        print(f"# elasticsearch: reachable, cluster health {status}")
    print("# configuration is valid", file=sys.stderr)
    return 0
