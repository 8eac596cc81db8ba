"""Configuration: one YAML file, ``FLOWSINK_<SECTION>_<KEY>`` environment overrides, validation at start.

This is the composition root: each component owns its settings dataclass (``flowsink.settings`` explains the
pattern) and this module only puts them together, one YAML section each, plus the top-level ``output`` key
that selects the outputs. Values are coerced from the field's type hint, so YAML and environment strings go
through the same checks, and every error names the key and the value::

    from flowsink.config import load_config
    config = load_config("flowsink.yml")          # raises flowsink.errors.ConfigError
    config.elasticsearch.url, config.queue.max_bytes, config.pipeline.deterministic_ids, config.output

``flowsink check-config FILE`` validates a file and prints the effective settings (YAML) after overrides;
``--example`` prints the annotated example configuration and ``--reference`` the reference table of
docs/operations.md, both made from the same definitions as the code's defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowsink import settings as settings_lib
from flowsink.api.settings import ApiSettings
from flowsink.decode.settings import DecoderSettings
from flowsink.enrich.settings import EnrichSettings
from flowsink.errors import ConfigError
from flowsink.log import LoggingSettings
from flowsink.pipeline import PipelineSettings
from flowsink.queue.settings import QueueSettings
from flowsink.receive import ReceiveSettings
from flowsink.server import HttpSettings
from flowsink.settings import setting
from flowsink.sinks import OUTPUTS
from flowsink.sinks.base import OutputContext
from flowsink.sinks.elasticsearch.settings import ElasticsearchSettings
from flowsink.sinks.file import FileSettings

ENV_PREFIX = "FLOWSINK_"


@dataclass
class NodeSettings:
    """The ``node`` section: who this node is and where it keeps its state."""

    name: str = setting("", help="node name in logs and metrics; empty means the host name")
    run_dir: str = setting(
        ".run/node",
        example="/var/lib/flowsink",
        help="state of this node: queue partitions, template cache, metrics files, dead letters",
    )

    def validate(self) -> None:
        if not self.run_dir:
            raise ConfigError("node.run_dir: a directory is required, got ''")


@dataclass
class Config:
    node: NodeSettings = field(default_factory=NodeSettings)
    elasticsearch: ElasticsearchSettings = field(default_factory=ElasticsearchSettings)
    file: FileSettings = field(default_factory=FileSettings)
    receive: ReceiveSettings = field(default_factory=ReceiveSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    decode: DecoderSettings = field(default_factory=DecoderSettings)
    enrich: EnrichSettings = field(default_factory=EnrichSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    # top-level key: where documents go (one output or a list); each output's settings are its section
    output: list[str] = field(
        default_factory=lambda: ["elasticsearch"],
        metadata={
            "help": f"where documents go: one of {', '.join(OUTPUTS)}, or a list of them",
            "choices": tuple(OUTPUTS),
        },
    )
    source: str = ""  # the file the settings came from (not a setting)

    # -- derived values, so every module resolves "empty means under run_dir" the same way --

    @property
    def run_dir(self) -> Path:
        return Path(self.node.run_dir)

    @property
    def queue_dir(self) -> Path:
        return Path(self.queue.dir) if self.queue.dir else self.run_dir / "queue"

    @property
    def receiver_processes(self) -> int:
        return self.receive.process_count

    def api_index_prefix(self) -> str:
        """Where the flows API writes: ``api.index_prefix``, by default under the node's own index prefix so that
        one prefix names every index (and the templates installed for them) of a deployment."""
        return self.api.index_prefix or f"{self.elasticsearch.index_prefix}-app-flows"

    def template_cache_path(self, partition: int) -> Path:
        path = self.decode.template_cache_path
        if path:
            if "{partition}" in path:
                return Path(path.replace("{partition}", str(partition)))
            return Path(f"{path}.{partition}")
        return self.run_dir / f"templates-{partition}.json"

    def output_context(self, partition: int = 0) -> OutputContext:
        return OutputContext(
            run_dir=self.run_dir,
            node_name=self.node.name,
            deterministic_ids=self.pipeline.deterministic_ids,
            partition=partition,
        )

    def output_sections(self) -> dict[str, Any]:
        """Output name -> its settings, for every output (the elasticsearch one knows where the API writes)."""
        return {
            name: (
                dataclasses.replace(self.elasticsearch, api_index_prefix=self.api_index_prefix())
                if name == "elasticsearch"
                else getattr(self, name)
            )
            for name in OUTPUTS
        }

    def api_settings(self) -> ApiSettings:
        """The ``api`` section with what it takes from the others: the cluster, the queue folder, the node id."""
        import socket

        resolved = self.api.resolved(self.api_index_prefix(), self.queue_dir / "api")
        return dataclasses.replace(
            resolved,
            es_hosts=list(self.elasticsearch.url),
            es_client_kwargs=self.elasticsearch.client_kwargs(),
            node_id=self.node.name or socket.gethostname(),
        )

    def to_dict(self, hide_secrets: bool = True) -> dict[str, Any]:
        """Effective settings as plain data (secrets shown as ``***`` unless asked otherwise)."""
        out: dict[str, Any] = {"output": list(self.output)}
        for section_field in _sections():
            out[section_field.name] = settings_lib.to_plain(getattr(self, section_field.name), hide_secrets)
        return out


def _sections() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.default_factory)]


SECTION_NAMES: tuple[str, ...] = tuple(f.name for f in _sections())
TOP_LEVEL_KEYS: tuple[str, ...] = ("output",)


def _check_cross_section(config: Config) -> None:
    """Rules that involve more than one section."""
    if not config.output:
        raise ConfigError(f"output: at least one output is required (one of {', '.join(OUTPUTS)}), got []")
    if len(set(config.output)) != len(config.output):
        raise ConfigError(f"output: an output is listed twice, got {config.output!r}")


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


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``FLOWSINK_<SECTION>_<KEY>=value`` -> ``{section: {key: value}}``; ``FLOWSINK_OUTPUT`` -> ``{"output": value}``.

    Only names that match a known section are read, so unrelated ``FLOWSINK_*`` variables (``FLOWSINK_RUN_DIR``
    used by scripts) are ignored; an unknown key inside a known section is an error, because it is a typo.
    """
    sections = sorted(SECTION_NAMES, key=len, reverse=True)
    found: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if rest in TOP_LEVEL_KEYS:
            found[rest] = value
            continue
        for section in sections:
            if rest.startswith(section + "_"):
                found.setdefault(section, {})[rest[len(section) + 1 :]] = value
                break
    return found


def _merge(file_data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for section, values in file_data.items():
        if section in TOP_LEVEL_KEYS:
            merged[section] = values
            continue
        if section not in SECTION_NAMES:
            known = ", ".join((*TOP_LEVEL_KEYS, *SECTION_NAMES))
            raise ConfigError(f"{section}: unknown section (known: {known})")
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a mapping of keys, got {values!r}")
        merged[section] = dict(values)
    defaults = Config()
    for section, values in overrides.items():
        if section in TOP_LEVEL_KEYS:
            merged[section] = values
            continue
        known = {f.name for f in settings_lib.public_fields(getattr(defaults, section))}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(
                    f"{ENV_PREFIX}{section.upper()}_{key.upper()}: unknown key {section}.{key} in the environment"
                )
            merged.setdefault(section, {})[key] = value
    return merged


def _output_list(value: Any) -> list[str]:
    outputs = settings_lib.coerce("output", value, list[str])
    for name in outputs:
        if name not in OUTPUTS:
            raise ConfigError(
                f"output: must be one of {', '.join(OUTPUTS)} (or a list of them), got {name!r}"
            )
    return outputs


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (None: defaults only), apply environment overrides, validate; raises ``ConfigError``."""
    file_data = _read_yaml(Path(path)) if path is not None else {}
    merged = _merge(file_data, env_overrides(os.environ if env is None else env))
    sections: dict[str, Any] = {}
    for section_field in _sections():
        raw = merged.get(section_field.name, {})
        sections[section_field.name] = settings_lib.build(
            section_field.name, section_field.default_factory, raw
        )
    if "output" in merged:
        sections["output"] = _output_list(merged["output"])
    config = Config(**sections, source=str(path) if path is not None else "")
    _check_cross_section(config)
    return config


def reloadable_changes(old: Config, new: Config) -> tuple[dict[str, Any], list[str]]:
    """Compare two configs: ({"section.key": new_value} safe to apply live, ["section.key", ...] needing a restart)."""
    apply: dict[str, Any] = {}
    restart: list[str] = ["output"] if old.output != new.output else []
    for section_field in _sections():
        name = section_field.name
        section_apply, section_restart = settings_lib.changes(getattr(old, name), getattr(new, name), name)
        apply.update(section_apply)
        restart += section_restart
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
    output_field = next(f for f in dataclasses.fields(Config) if f.name == "output")
    rows = [("output", f"{ENV_PREFIX}OUTPUT", ["elasticsearch"], output_field.metadata["help"], False)]
    for section_field in _sections():
        cls = section_field.default_factory
        for f in settings_lib.public_fields(cls):
            rows.append(
                (
                    f"{section_field.name}.{f.name}",
                    f"{ENV_PREFIX}{section_field.name.upper()}_{f.name.upper()}",
                    settings_lib.default_of(f),
                    f.metadata.get("help", ""),
                    bool(f.metadata.get("reloadable")),
                )
            )
    return rows


def _yaml_scalar(value: Any) -> str:
    """A value as it reads best in the example file: sizes with binary suffixes, lists in flow style."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value >= 1024 * 1024 and value % (1024 * 1024) == 0:
        for unit, size in (("GiB", settings_lib.GIB), ("MiB", settings_lib.MIB)):
            if value % size == 0:
                return f"{value // size}{unit}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text.removesuffix("\n...").strip()


def example_yaml() -> str:
    """The annotated example configuration: every key with its default (or a marked example) and help line."""
    lines = [
        "# flowsink ingest node: example configuration (`flowsink run --config flowsink.example.yml`).",
        "# Generated by `flowsink check-config --example` from the settings' definitions: every key, its default",
        "# (or a value marked 'example') and what it does. Every key is optional.",
        "# Any key can be overridden from the environment: FLOWSINK_<SECTION>_<KEY>, e.g. FLOWSINK_ELASTICSEARCH_URL",
        "# (lists as comma-separated values). Check a file with: flowsink check-config FILE [--check-es]",
        "# Full reference: docs/operations.md",
        "",
        f"output: {_yaml_scalar(['elasticsearch'])}    # one of {', '.join(OUTPUTS)}, or a list of them",
    ]
    for section_field in _sections():
        lines += ["", f"{section_field.name}:"]
        for f in settings_lib.public_fields(section_field.default_factory):
            value, is_example = settings_lib.example_value(f)
            notes = []
            if is_example:
                notes.append(f"example (default {_yaml_scalar(settings_lib.default_of(f))})")
            if f.metadata.get("reloadable"):
                notes.append("reloadable (SIGHUP)")
            if f.metadata.get("help"):
                notes.append(f.metadata["help"])
            entry = f"  {f.name}: {_yaml_scalar(value)}"
            lines.append(f"{entry:<40}  # {'; '.join(notes)}" if notes else entry)
    return "\n".join(lines) + "\n"


def reference_markdown() -> str:
    """The configuration reference of docs/operations.md: one table per section, from the definitions."""

    def shown(value: Any) -> str:
        return f"`{_yaml_scalar(value)}`" if value not in ("", []) else '`""`' if value == "" else "`[]`"

    output_field = next(f for f in dataclasses.fields(Config) if f.name == "output")
    out = [
        "### `output` (top level)",
        "",
        "| key | default | env | notes |",
        "|---|---|---|---|",
        f"| `output` | `[elasticsearch]` | `{ENV_PREFIX}OUTPUT` | {output_field.metadata['help']} |",
    ]
    for section_field in _sections():
        out += ["", f"### `{section_field.name}`", "", "| key | default | env | notes |", "|---|---|---|---|"]
        for f in settings_lib.public_fields(section_field.default_factory):
            env = f"{ENV_PREFIX}{section_field.name.upper()}_{f.name.upper()}"
            notes = f.metadata.get("help", "") + (" **(SIGHUP)**" if f.metadata.get("reloadable") else "")
            out.append(f"| `{f.name}` | {shown(settings_lib.default_of(f))} | `{env}` | {notes.strip()} |")
    return "\n".join(out) + "\n"


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
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--example",
        action="store_true",
        help="print the annotated example configuration (every key) and exit",
    )
    what.add_argument(
        "--reference", action="store_true", help="print the configuration reference table (markdown) and exit"
    )


def check_elasticsearch(config: Config, timeout_s: float | None = None) -> str:
    """Ask the cluster for its health; returns ``"<status> (<n> nodes)"`` or raises ``ConfigError``."""
    from flowsink.sinks.elasticsearch.client import connect, short_reason

    es = connect(config.elasticsearch, request_timeout=timeout_s or config.elasticsearch.request_timeout_s)
    try:
        health = es.cluster.health(timeout=f"{max(1, int(timeout_s or 5))}s")
    except Exception as exc:
        urls = ", ".join(config.elasticsearch.url)
        raise ConfigError(
            f"elasticsearch.url: cannot reach Elasticsearch at {urls}: {short_reason(exc)}"
        ) from None
    finally:
        es.close()
    return f"{health['status']} ({health['number_of_nodes']} nodes)"


def main(args: argparse.Namespace) -> int:
    if args.example:
        sys.stdout.write(example_yaml())
        return 0
    if args.reference:
        sys.stdout.write(reference_markdown())
        return 0
    config = load_config(args.file)
    yaml.safe_dump(config.to_dict(hide_secrets=not args.show_secrets), sys.stdout, sort_keys=False)
    if args.check_es:
        status = check_elasticsearch(config)
        print(f"# elasticsearch: reachable, cluster health {status}")
    print("# configuration is valid", file=sys.stderr)
    return 0
