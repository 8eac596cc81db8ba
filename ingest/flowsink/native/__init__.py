"""The optional C extension ``flowsink.native._native``, loaded once for every caller: ``EXTENSION``, or None.

Built by ``pip install`` (setup.py, ``optional=True``) from this package's C files when a compiler is there; a
clone builds it with ``make deps`` or ``python setup.py build_ext --inplace``. Every caller keeps a pure-Python
path that gives identical documents, taken when ``EXTENSION`` is None: the extension is not built, failed to
import, is a build of another interface version (not rebuilt after an update), or ``FLOWSINK_NO_EXTENSION`` is
set (tests compare the two paths, and it is a way out should the extension ever misbehave).

This is the lowest layer of the decoders: ``normalize`` and ``decode`` import it, it imports neither.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

__all__ = ["DISABLE_VARIABLE", "EXTENSION", "INTERFACE_VERSION", "MODULE_NAME", "load_extension"]

# what the Python code calls (module.c's INTERFACE_VERSION); a build of another version is not used
INTERFACE_VERSION = 2
MODULE_NAME = "flowsink.native._native"
DISABLE_VARIABLE = "FLOWSINK_NO_EXTENSION"

_log = logging.getLogger(__name__)


def load_extension() -> ModuleType | None:
    """The compiled module, or None (not built, failed to import, stale, or FLOWSINK_NO_EXTENSION set).

    Called once at import for ``EXTENSION``: a build that cannot be used is logged there, once per process.
    """
    if os.environ.get(DISABLE_VARIABLE, "") not in ("", "0"):
        return None
    try:
        module = importlib.import_module(MODULE_NAME)
    except ModuleNotFoundError as exc:
        if exc.name != MODULE_NAME:
            raise
        return None  # not built: the pure-Python path is the expected one
    except ImportError as exc:  # built, but not loadable here (another Python, a missing symbol)
        _log.warning("%s does not load (%s): decoding in pure Python", MODULE_NAME, exc)
        return None
    version = getattr(module, "INTERFACE_VERSION", None)
    if version != INTERFACE_VERSION:
        _log.warning(
            "%s is a build of interface version %s, this code needs %s (rebuild with `make deps` or "
            "`pip install -e .`): decoding in pure Python",
            MODULE_NAME,
            version,
            INTERFACE_VERSION,
        )
        return None
    return module


EXTENSION: ModuleType | None = load_extension()
