"""Installs flowsink's index and component templates (``elasticsearch/*.json``) at start-up.

Every ``*.json`` file in the template folder is one template: a file with ``index_patterns`` is a composable
index template, any other a component template; the template's name is ``<prefix>-<file stem>`` (prefix
``flowsink`` unless the settings say otherwise, so tests can install a private copy). Each file carries
``_meta.version``; the installer puts a template that is missing, upgrades one whose installed version is
older, re-puts one whose version is equal but whose rendered body differs (install-time settings changed), and
never downgrades a newer one another node installed.

Optional cluster features are detected from ``GET _nodes/plugins`` and used only where every node has them:
``unsigned_long`` (else raw u64 counters map to ``long``), ILM (a retention policy, when ``retention_days`` is
set) and GeoIP (an ingest pipeline for index templates that ask for it with ``_meta.geoip``). Each one skipped
says so in one log line.

A document profile (``elasticsearch.document_profile``) is a component template file whose ``_meta.profile``
names it and whose ``_meta.for`` lists the index templates it joins, last in their ``composed_of`` (so it
overrides the components before it) when that profile is chosen. The shipped ``lean`` profile asks for the
LogsDB index mode; whether the cluster gives LogsDB its synthetic ``_source`` (a licence or a version may not)
is found out by creating a probe index, and where it does not the mode is left out.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError

from flowsink import assets
from flowsink.errors import ConfigError, UserError
from flowsink.sinks.elasticsearch.client import client_url, short_reason, wait_for_elasticsearch
from flowsink.sinks.elasticsearch.settings import DOCUMENT_PROFILES

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE_DIR = assets.path("elasticsearch")
SHIPPED_PREFIX = "flowsink"
# the flows API's indices, named by api.index_prefix rather than elasticsearch.index_prefix
SHIPPED_API_PREFIX = "flowsink-app-flows"


@dataclass
class TemplateSettings:
    """What the installer needs; ``None`` keeps the value written in the template files."""

    template_dir: Path = DEFAULT_TEMPLATE_DIR
    name_prefix: str = SHIPPED_PREFIX
    # where the flows API writes (api.index_prefix); None: under name_prefix like every other index
    api_prefix: str | None = None
    shards: int | None = None
    replicas: int | None = None
    refresh_interval: str | None = None
    retention_days: int | None = None
    geoip: bool = True
    document_profile: str = "full"
    connect_timeout_s: float = 10.0


@dataclass(frozen=True)
class ClusterFeatures:
    """Plugins and modules present on every node of the cluster."""

    modules: frozenset[str] = field(default_factory=frozenset)
    # a LogsDB index gets synthetic _source here (found by a probe index, only when a profile asks for LogsDB)
    logsdb: bool = False

    @property
    def unsigned_long(self) -> bool:
        return "unsigned-long" in self.modules

    @property
    def ilm(self) -> bool:
        return "x-pack-ilm" in self.modules

    @property
    def geoip(self) -> bool:
        return "ingest-geoip" in self.modules

    @classmethod
    def from_nodes_plugins(cls, response: dict[str, Any]) -> ClusterFeatures:
        """Intersect each node's modules and plugins (a feature is usable only if every node has it)."""
        per_node = [
            {item["name"] for item in node.get("modules", []) + node.get("plugins", [])}
            for node in response.get("nodes", {}).values()
        ]
        common = set.intersection(*per_node) if per_node else set()
        return cls(frozenset(common))


@dataclass
class TemplateFile:
    """One validated template file."""

    path: Path
    body: dict[str, Any]

    @property
    def is_index_template(self) -> bool:
        return "index_patterns" in self.body

    @property
    def version(self) -> int:
        return int(self.body["_meta"]["version"])

    @property
    def profile(self) -> str | None:
        """The document profile this component template belongs to (None: it is always used)."""
        return self.body["_meta"].get("profile")

    @property
    def wants_logsdb(self) -> bool:
        return _index_settings(self.body).get("mode") == "logsdb"


def _index_settings(body: dict[str, Any]) -> dict[str, Any]:
    return body.get("template", {}).get("settings", {}).get("index", {})


def load_template_files(directory: Path) -> list[TemplateFile]:
    """Parse and check every ``*.json`` in ``directory``; component templates come first (install order)."""
    if not directory.is_dir():
        raise ConfigError(f"template folder {directory} does not exist")
    files = [_load_one(path) for path in sorted(directory.glob("*.json"))]
    if not files:
        raise ConfigError(f"no *.json template files in {directory}")
    components = {f"{SHIPPED_PREFIX}-{f.path.stem}" for f in files if not f.is_index_template}
    index_templates = {f"{SHIPPED_PREFIX}-{f.path.stem}" for f in files if f.is_index_template}
    for tf in files:
        for name in tf.body.get("composed_of", []):
            if name not in components:
                raise ConfigError(
                    f"{tf.path}: composed_of names {name!r}, which no file in {directory} defines"
                )
        if tf.profile is not None:
            joins = tf.body["_meta"].get("for")
            if tf.is_index_template or not isinstance(joins, list) or not set(joins) <= index_templates:
                raise ConfigError(
                    f"{tf.path}: a profile is a component template whose _meta.for lists index templates"
                    f" defined in {directory}"
                )
    return sorted(files, key=lambda f: (f.is_index_template, f.path.name))


def _load_one(path: Path) -> TemplateFile:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if not isinstance(body, dict):
        raise ConfigError(f"{path}: a template file must hold a JSON object")
    version = body.get("_meta", {}).get("version") if isinstance(body.get("_meta"), dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{path}: _meta.version must be a positive integer, found {version!r}")
    if not isinstance(body.get("template", {}), dict):
        raise ConfigError(f"{path}: 'template' must be an object")
    profile = body["_meta"].get("profile")
    if profile is not None and profile not in DOCUMENT_PROFILES:
        raise ConfigError(
            f"{path}: _meta.profile must be one of {', '.join(DOCUMENT_PROFILES)}, found {profile!r}"
        )
    for key in ("index_patterns", "composed_of"):
        value = body.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: {key!r} must be a list of strings")
    return TemplateFile(path, body)


def _renamed(name: str, prefix: str, api_prefix: str | None = None) -> str:
    if api_prefix is not None and name.startswith(SHIPPED_API_PREFIX + "-"):
        return api_prefix + name[len(SHIPPED_API_PREFIX) :]
    if prefix != SHIPPED_PREFIX and name.startswith(SHIPPED_PREFIX + "-"):
        return prefix + name[len(SHIPPED_PREFIX) :]
    return name


def _downgrade_unsigned_long(node: Any) -> None:
    """Replace ``unsigned_long`` by ``long`` in place, for clusters without the unsigned-long module."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "type" and value == "unsigned_long":
                node[key] = "long"
            else:
                _downgrade_unsigned_long(value)
    elif isinstance(node, list):
        for item in node:
            _downgrade_unsigned_long(item)


def render_template(
    tf: TemplateFile,
    settings: TemplateSettings,
    features: ClusterFeatures,
    profiles: Sequence[TemplateFile] = (),
) -> tuple[str, dict[str, Any]]:
    """The template's name and the body to PUT: renamed, settings applied, features resolved, digest stamped.

    ``profiles``: the profile component templates of the folder; those of ``settings.document_profile`` that
    name this index template in their ``_meta.for`` are added last to its ``composed_of``."""
    prefix = settings.name_prefix
    body = copy.deepcopy(tf.body)
    meta = body.pop("_meta")
    wants_geoip = bool(meta.pop("geoip", False))
    if "index_patterns" in body:
        body["index_patterns"] = [_renamed(p, prefix, settings.api_prefix) for p in body["index_patterns"]]
    if "composed_of" in body:
        shipped_name = f"{SHIPPED_PREFIX}-{tf.path.stem}"
        body["composed_of"] += [
            f"{SHIPPED_PREFIX}-{p.path.stem}"
            for p in profiles
            if p.profile == settings.document_profile and shipped_name in p.body["_meta"]["for"]
        ]
        body["composed_of"] = [_renamed(c, prefix) for c in body["composed_of"]]
    template = body.setdefault("template", {})
    if tf.wants_logsdb and not features.logsdb:
        # a plain index: LogsDB without synthetic _source would only add sorting to a stored _source
        _index_settings(body).pop("mode")
    index_settings = template.get("settings", {}).get("index")
    if index_settings is not None:
        _apply_settings(index_settings, settings, features)
    if wants_geoip and settings.geoip and features.geoip:
        template.setdefault("settings", {}).setdefault("index", {})["default_pipeline"] = f"{prefix}-geoip"
    if not features.unsigned_long:
        _downgrade_unsigned_long(template)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    meta.update(managed_by="flowsink", digest=hashlib.sha256(canonical.encode()).hexdigest()[:16])
    body["_meta"] = meta
    body["version"] = tf.version
    return f"{prefix}-{tf.path.stem}", body


def _apply_settings(
    index_settings: dict[str, Any], settings: TemplateSettings, features: ClusterFeatures
) -> None:
    if settings.shards is not None:
        index_settings["number_of_shards"] = settings.shards
    if settings.replicas is not None:
        index_settings.pop("auto_expand_replicas", None)
        index_settings["number_of_replicas"] = settings.replicas
    if settings.refresh_interval is not None:
        index_settings["refresh_interval"] = settings.refresh_interval
    if settings.retention_days is not None and features.ilm:
        index_settings.setdefault("lifecycle", {})["name"] = f"{settings.name_prefix}-retention"


def source_only_fields(profile: str, template_dir: Path = DEFAULT_TEMPLATE_DIR) -> list[str]:
    """Dotted names of the fields a profile maps neither indexed nor with doc values (kept in ``_source``
    only): what decoders writing for that profile may leave out of their documents altogether."""
    found: list[str] = []

    def walk(properties: dict[str, Any], path: str) -> None:
        for name, mapping in properties.items():
            if "properties" in mapping:
                walk(mapping["properties"], f"{path}{name}.")
            elif mapping.get("index") is False and mapping.get("doc_values") is False:
                found.append(path + name)

    for tf in load_template_files(template_dir):
        if tf.profile == profile:
            walk(tf.body.get("template", {}).get("mappings", {}).get("properties", {}), "")
    return found


def detect_features(
    client: Elasticsearch, probe_logsdb: bool = False, prefix: str = SHIPPED_PREFIX
) -> ClusterFeatures:
    features = ClusterFeatures.from_nodes_plugins(client.nodes.info(metric="plugins"))
    if probe_logsdb:
        features = dataclasses.replace(features, logsdb=_logsdb_gives_synthetic_source(client, prefix))
    return features


def _logsdb_gives_synthetic_source(client: Elasticsearch, prefix: str) -> bool:
    """Whether a LogsDB index created now gets synthetic _source: the mode may be unknown (before 8.17), or
    kept with a stored _source (a licence without synthetic _source), which the settings of a real index say.
    The probe index's name matches none of flowsink's index templates; it is deleted at once."""
    name = f"{prefix}-probe-logsdb-{uuid.uuid4().hex[:8]}"
    try:
        client.indices.create(index=name, settings={"index": {"mode": "logsdb", "number_of_replicas": 0}})
        found = client.indices.get_settings(index=name, include_defaults=True, flat_settings=True)[name]
        key = "index.mapping.source.mode"
        mode = found.get("settings", {}).get(key) or found.get("defaults", {}).get(key) or ""
        return str(mode).lower() == "synthetic"
    except ApiError as exc:
        log.info("LogsDB probe index %s refused: %s", name, short_reason(exc))
        return False
    finally:
        client.options(ignore_status=404).indices.delete(index=name)


def _install_optional(
    client: Elasticsearch, settings: TemplateSettings, features: ClusterFeatures
) -> list[str]:
    prefix, done = settings.name_prefix, []
    if not features.unsigned_long:
        log.info("unsigned_long not available in this cluster: raw u64 counters are mapped as long")
    if settings.retention_days is not None:
        if features.ilm:
            policy = {
                "_meta": {"managed_by": "flowsink"},
                "phases": {
                    "hot": {"actions": {}},
                    "delete": {"min_age": f"{settings.retention_days}d", "actions": {"delete": {}}},
                },
            }
            client.ilm.put_lifecycle(name=f"{prefix}-retention", policy=policy)
            done.append(f"{prefix}-retention installed")
        else:
            log.info(
                "ILM not available in this cluster: retention of %d days not applied", settings.retention_days
            )
    if settings.geoip:
        if features.geoip:
            processors = [
                {"geoip": {"field": f"{side}.ip", "target_field": f"{side}.geo", "ignore_missing": True}}
                for side in ("source", "destination")
            ]
            client.ingest.put_pipeline(
                id=f"{prefix}-geoip", description="GeoIP of flow addresses (flowsink)", processors=processors
            )
            done.append(f"{prefix}-geoip installed")
        else:
            log.info("GeoIP enrichment skipped: this cluster has no ingest-geoip module")
    return done


def _installed_version(client: Elasticsearch, name: str, is_index: bool) -> tuple[int | None, str | None]:
    """(version, digest) of the installed template, or (None, None) when it is missing."""
    try:
        if is_index:
            found = client.indices.get_index_template(name=name)["index_templates"][0]["index_template"]
        else:
            found = client.cluster.get_component_template(name=name)["component_templates"][0][
                "component_template"
            ]
    except ApiError as exc:
        if exc.meta.status == 404:
            return None, None
        raise
    meta = found.get("_meta") or {}
    version = meta.get("version", found.get("version"))
    return (int(version) if version is not None else 0), meta.get("digest")


def _install_one(
    client: Elasticsearch,
    tf: TemplateFile,
    settings: TemplateSettings,
    features: ClusterFeatures,
    profiles: Sequence[TemplateFile],
) -> str:
    name, body = render_template(tf, settings, features, profiles)
    installed, digest = _installed_version(client, name, tf.is_index_template)
    if installed is None:
        action = "installed"
    elif installed < tf.version:
        action = "upgraded"
    elif installed > tf.version:
        log.warning(
            "%s: installed version %d is newer than %s (version %d); left as it is",
            name,
            installed,
            tf.path.name,
            tf.version,
        )
        return f"{name} unchanged"
    elif digest != body["_meta"]["digest"]:
        action = "updated"
    else:
        return f"{name} unchanged"
    try:
        if tf.is_index_template:
            client.indices.put_index_template(name=name, **body)
        else:
            client.cluster.put_component_template(name=name, **body)
    except ApiError as exc:
        if exc.meta.status >= 500:
            raise
        reason = exc.body.get("error", {}).get("reason") if isinstance(exc.body, dict) else exc.message
        raise ConfigError(f"{tf.path}: Elasticsearch rejected template {name}: {reason}") from None
    log.info("%s %s (version %d)", name, action, tf.version)
    return f"{name} {action}"


def install_templates(client: Elasticsearch, settings: TemplateSettings | None = None) -> list[str]:
    """Put every template (and optional ILM policy / GeoIP pipeline) idempotently.

    Returns one ``"<name> <action>"`` per item, action in installed / upgraded / updated / unchanged.
    Raises ``ConfigError`` for a bad template file (before touching the cluster) and ``UserError`` when
    Elasticsearch does not answer within ``settings.connect_timeout_s``.
    """
    settings = settings or TemplateSettings()
    if settings.document_profile not in DOCUMENT_PROFILES:
        raise ConfigError(
            f"document profile must be one of {', '.join(DOCUMENT_PROFILES)}, not {settings.document_profile!r}"
        )
    files = load_template_files(Path(settings.template_dir))
    profiles = [tf for tf in files if tf.profile is not None]
    wanted = [tf for tf in profiles if tf.profile == settings.document_profile]
    wait_for_elasticsearch(client, settings.connect_timeout_s)
    try:
        needs_logsdb = any(tf.wants_logsdb for tf in wanted)
        features = detect_features(client, needs_logsdb, settings.name_prefix)
        if needs_logsdb and not features.logsdb:
            log.info(
                "document profile %s: this cluster gives LogsDB no synthetic _source; its flow indices are plain"
                " ones (stored _source, best_compression)",
                settings.document_profile,
            )
        report = _install_optional(client, settings, features)
        report += [_install_one(client, tf, settings, features, profiles) for tf in files]
    except (TransportError, ApiError) as exc:
        raise UserError(f"cannot install templates at {client_url(client)}: {short_reason(exc)}") from None
    return report


def remove_templates(client: Elasticsearch, settings: TemplateSettings) -> None:
    """Delete the templates the files in ``settings.template_dir`` define (tests; uninstalling a prefix)."""
    files = load_template_files(Path(settings.template_dir))
    ignoring_missing = client.options(ignore_status=404)
    for tf in reversed(files):  # index templates first: a component in use cannot be deleted
        name = f"{settings.name_prefix}-{tf.path.stem}"
        if tf.is_index_template:
            ignoring_missing.indices.delete_index_template(name=name)
        else:
            ignoring_missing.cluster.delete_component_template(name=name)
