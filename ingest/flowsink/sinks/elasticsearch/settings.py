"""Settings of the Elasticsearch output (the ``elasticsearch`` section): connection, bulk requests, retries,
dead letters and the index templates. The flows API and ``flowsink install-templates`` use the same
connection settings."""

from __future__ import annotations

from dataclasses import dataclass

from flowsink.errors import ConfigError
from flowsink.settings import GIB, MIB, setting

# full: every field as the decoders write it, all indexed, _source as decoded. lean: elasticsearch/profile-lean.json
# (LogsDB where it has synthetic _source; repeated raw fields in _source only). What each costs: docs/elasticsearch.md
DOCUMENT_PROFILES = ("full", "lean")


@dataclass
class ElasticsearchSettings:
    url: list[str] = setting(
        factory=lambda: ["http://127.0.0.1:9200"],
        help="one URL or a list (bulk requests are spread over them); the env override takes a comma-separated list",
    )
    username: str = setting("", help="basic auth user (empty: none)")
    password: str = setting("", secret=True, help="basic auth password")
    api_key: str = setting("", secret=True, help="API key (base64 id:key), instead of basic auth")
    ca_certs: str = setting("", help="CA bundle for https URLs")
    verify_certs: bool = setting(True, help="verify the server certificate of https URLs")
    request_timeout_s: float = setting(60.0, min=1, help="timeout of one HTTP request to Elasticsearch")
    startup_timeout_s: float = setting(
        30.0, min=0, help="how long `flowsink run` waits for Elasticsearch at start before giving up"
    )
    index_prefix: str = setting(
        "flowsink", help="indices are <prefix>-flows-YYYY.MM.DD and <prefix>-meta-YYYY.MM.DD"
    )
    install_templates: bool = setting(True, help="install the index templates at start-up")
    template_dir: str = setting("", help="directory of template JSON files (empty: the packaged ones)")
    number_of_shards: int = setting(1, min=1, max=1024, help="primary shards of each daily index (templates)")
    number_of_replicas: int = setting(0, min=0, max=16, help="replicas of each daily index (templates)")
    document_profile: str = setting(
        "full",
        choices=DOCUMENT_PROFILES,
        help="full: every raw field indexed, _source exactly as decoded; lean: LogsDB where the cluster gives it "
        "synthetic _source, raw fields that repeat an ECS field and flow.id in _source only (docs/elasticsearch.md)",
    )
    bulk_max_docs: int = setting(
        5000, min=1, max=1_000_000, reloadable=True, help="documents per bulk request"
    )
    bulk_max_bytes: int = setting(
        10 * MIB, min=1024, max=1 * GIB, reloadable=True, help="bytes per bulk request"
    )
    bulk_concurrency: int = setting(2, min=1, max=64, help="bulk requests in flight per pipeline worker")
    retry_initial_backoff_s: float = setting(
        0.1, min=0.001, help="first wait after a refused or failed request"
    )
    retry_max_backoff_s: float = setting(
        30.0, min=0.1, help="cap of the exponential backoff on 429/5xx/unreachable (retries never give up)"
    )
    retry_max_item_attempts: int = setting(
        10, min=1, help="a document refused with another 5xx this many times is dead-lettered"
    )
    give_back_after_s: float = setting(
        5.0,
        min=0.1,
        help="a batch not placed within this hands its rest back to the worker, which keeps it queued and "
        "offers it again (timers and reloads run meanwhile)",
    )
    dead_letter_path: str = setting(
        "", help="file of documents Elasticsearch rejected (empty: <run_dir>/dead-letter.jsonl)"
    )
    dead_letter_index: str = setting(
        "", help="also index rejected documents into <this>-YYYY.MM.DD (empty: no)"
    )
    # Set by code: "create" with deterministic ids (replays answer 409) or "index" (ids chosen by Elasticsearch).
    op_type: str = setting("create", internal=True)
    # Set by the node: where the flows API writes (its templates are installed with the others).
    api_index_prefix: str | None = setting(None, internal=True)
    # Set by tests: refresh after each bulk request.
    refresh: str | None = setting(None, internal=True)

    def validate(self) -> None:
        if not self.url:
            raise ConfigError("elasticsearch.url: at least one URL is required, got []")
        for url in self.url:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"elasticsearch.url: expected http:// or https:// URLs, got {url!r}")
        prefix = self.index_prefix
        if not prefix or prefix != prefix.lower() or any(c in prefix for c in ' "*\\<|,>/?#:'):
            raise ConfigError(
                f"elasticsearch.index_prefix: must be a non-empty lower-case index name, got {prefix!r}"
            )
        if self.op_type not in ("create", "index"):
            raise ValueError(f"op_type must be 'create' or 'index', not {self.op_type!r}")

    def client_kwargs(self, **overrides: object) -> dict[str, object]:
        """elasticsearch-py client arguments (auth, TLS, timeouts), sync or async."""
        kwargs: dict[str, object] = {"request_timeout": self.request_timeout_s}
        if self.api_key:
            kwargs["api_key"] = self.api_key
        elif self.username:
            kwargs["basic_auth"] = (self.username, self.password)
        if self.ca_certs:
            kwargs["ca_certs"] = self.ca_certs
        if any(u.startswith("https://") for u in self.url):
            kwargs["verify_certs"] = self.verify_certs
        kwargs.update(overrides)
        return kwargs
