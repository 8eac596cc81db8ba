"""The optional C accelerator ``flowsink.decode._fast``, or None when it is absent or switched off.

Built by ``pip install`` from ``_fast.c`` when a compiler is there (setup.py, ``optional=True``). Every caller
keeps a pure-Python path that gives identical documents; ``FLOWSINK_NO_EXTENSION=1`` forces that path (tests
compare the two, and it is a way out should the extension ever misbehave).
"""

from __future__ import annotations

import logging
import os
from types import ModuleType

# what the Python code calls; a build of another version of _fast.c (not rebuilt after an update) is not used
INTERFACE_VERSION = 3


def load_extension() -> ModuleType | None:
    """The compiled module, or None (not built, failed to import, stale, or FLOWSINK_NO_EXTENSION set)."""
    if os.environ.get("FLOWSINK_NO_EXTENSION", "") not in ("", "0"):
        return None
    try:
        from flowsink.decode import _fast
    except ImportError:
        return None
    if getattr(_fast, "INTERFACE_VERSION", None) != INTERFACE_VERSION:
        logging.getLogger(__name__).warning(
            "flowsink.decode._fast is a build of another version (rebuild with `pip install -e .`); "
            "decoding in pure Python"
        )
        return None
    return _fast


FAST: ModuleType | None = load_extension()
