"""Where each receiver's queue lives: ``<queue_dir>/rx-<i>``, one directory per receiver process.

One writer per directory keeps appends lock-free, and with SO_REUSEPORT the kernel keeps each exporter's
4-tuple on one socket, hence one receiver and one directory: per-exporter arrival order survives.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_PARTITION = re.compile(r"^rx-(\d+)$")


def receiver_dir(queue_dir: str | os.PathLike[str], index: int) -> Path:
    """The queue directory of receiver ``index`` (created if missing)."""
    path = Path(queue_dir) / f"rx-{index}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def partition_dirs(queue_dir: str | os.PathLike[str], receivers: int) -> list[Path]:
    """Every partition a node must drain: ``rx-0 .. rx-<receivers-1>`` plus any left by an earlier run.

    A node restarted with fewer receivers still has entries queued in the higher-numbered directories; they are
    returned too so that pipeline workers read them out.
    """
    base = Path(queue_dir)
    wanted = {i: receiver_dir(base, i) for i in range(receivers)}
    if base.is_dir():
        for entry in base.iterdir():
            match = _PARTITION.match(entry.name)
            if match and entry.is_dir():
                wanted.setdefault(int(match.group(1)), entry)
    return [wanted[i] for i in sorted(wanted)]
