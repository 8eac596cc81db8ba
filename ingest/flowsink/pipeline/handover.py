"""NetFlow v9 / IPFIX templates handed over between a node's partitions.

Each pipeline worker keeps the templates of the exporters its partition receives, and saves them to its own cache
file (``decode.template_cache_path``). SO_REUSEPORT keeps an exporter on one receiver only while the receivers'
sockets stay the same: after a receiver restarts, the kernel may hash the exporter to another receiver, hence
another partition, whose worker never saw its templates. Rather than hold that data until the exporter sends its
templates again (every few minutes, often; the data expires after ``decode.pending_max_seconds``), the worker
looks the template up in the caches its sibling partitions saved; a worker saves its cache within a second of
learning a new template (``PipelineWorker.tick``), so whatever the node knew is there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flowsink.decode.template_cache import ExporterOptions, StateKey, Template, TemplateStore
from flowsink.log import RateLimitedLog, get_logger

log = get_logger(__name__)


class SiblingTemplates:
    """Looks templates up in the cache files other partitions saved, each file parsed again only when it
    changed (its size and modification time). Callable as a ``TemplateStore.fallback``."""

    def __init__(self, paths: Iterable[Path], settings: Any, log_interval_s: float = 10.0) -> None:
        self.paths = [Path(p) for p in paths]
        self.settings = settings
        self._loaded: dict[Path, tuple[tuple[int, int], TemplateStore | None]] = {}
        self._log = RateLimitedLog(log, log_interval_s)

    def __call__(self, key: StateKey, template_id: int) -> tuple[Template, ExporterOptions | None] | None:
        for path in self.paths:
            store = self._store(path)
            template = store.get(key, template_id) if store is not None else None
            if template is not None:
                assert store is not None
                return template, store.options.get(key)
        return None

    def _store(self, path: Path) -> TemplateStore | None:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            self._loaded.pop(path, None)
            return None
        except OSError as exc:
            self._log.warning("sibling_templates", "cannot read template cache %s: %s", path, exc)
            return None
        version = (stat.st_mtime_ns, stat.st_size)
        loaded = self._loaded.get(path)
        if loaded is not None and loaded[0] == version:
            return loaded[1]
        s = self.settings
        store = TemplateStore(s.max_templates_per_exporter, s.max_exporters, s.template_expiry_seconds)
        try:
            store.load(str(path))
        except ValueError as exc:  # damaged: read again once it changes
            self._log.warning("sibling_templates", "ignoring template cache %s: %s", path, exc)
            self._loaded[path] = (version, None)
            return None
        self._loaded[path] = (version, store)
        return store
