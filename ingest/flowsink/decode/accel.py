"""The optional C accelerator ``flowsink.decode._fast``, or None when it is absent or switched off.

Built by ``pip install`` from ``_fast.c`` when a compiler is there (setup.py, ``optional=True``). Every caller
keeps a pure-Python path that gives identical documents; ``FLOWSINK_NO_EXTENSION=1`` forces that path (tests
compare the two, and it is a way out should the extension ever misbehave).
"""

from __future__ import annotations

import os
from types import ModuleType


def load_extension() -> ModuleType | None:
    """The compiled module, or None (not built, failed to import, or FLOWSINK_NO_EXTENSION set)."""
    if os.environ.get("FLOWSINK_NO_EXTENSION", "") not in ("", "0"):
        return None
    try:
        from flowsink.decode import _fast
    except ImportError:
        return None
    return _fast


FAST: ModuleType | None = load_extension()
