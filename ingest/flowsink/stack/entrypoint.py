"""Entry point of the ingest container: claim a queue slot on the shared volume, then become ``flowsink run``.

``docker compose up --scale ingest=N`` starts N identical replicas that share one named volume
(``/var/lib/flowsink``). Each replica must own a queue of its own, and a replica that replaces a dead one should
pick up the dead one's queue (its unacknowledged datagrams) rather than start empty. So each replica takes the
first slot directory ``slot-K`` whose lock file it can ``flock``; the lock stays held across ``exec`` (the file
descriptor is inherited) and the kernel releases it when the node exits, however it exits.

    python -m flowsink.stack.entrypoint [COMMAND...]     (the image's ENTRYPOINT; COMMAND defaults to flowsink run)
    flowsink stack entrypoint [-- COMMAND...]

Standard library only (and no module of the node), since it runs before the node.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

MAX_SLOTS = 256


def claim_slot(root: Path) -> tuple[int, Path]:
    """Lock the first free ``root/slot-K/.lock``; returns (its file descriptor, the slot folder)."""
    root.mkdir(parents=True, exist_ok=True)
    for k in range(MAX_SLOTS):
        slot = root / f"slot-{k}"
        slot.mkdir(exist_ok=True)
        fd = os.open(slot / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.set_inheritable(fd, True)
        return fd, slot
    raise SystemExit(f"entrypoint: all {MAX_SLOTS} queue slots under {root} are taken")


def main(argv: list[str]) -> int:
    root = Path(os.environ.get("FLOWSINK_STATE_ROOT", "/var/lib/flowsink"))
    _fd, slot = claim_slot(root)
    os.environ["FLOWSINK_NODE_RUN_DIR"] = str(slot)
    os.environ.setdefault("FLOWSINK_NODE_NAME", f"{os.uname().nodename}-{slot.name}")
    print(f"entrypoint: queue slot {slot}", file=sys.stderr, flush=True)
    command = argv or ["flowsink", "run"]
    os.execvp(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
