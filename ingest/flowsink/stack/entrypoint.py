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
import socket
import sys
from pathlib import Path

MAX_SLOTS = 256


def _lock(slot: Path) -> int | None:
    slot.mkdir(exist_ok=True)
    fd = os.open(slot / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.set_inheritable(fd, True)
    return fd


def claim_slot(root: Path, owner: str | None = None) -> tuple[int, Path]:
    """Lock a free ``root/slot-K/.lock``: the one ``owner`` held last if it is free, else the first free one.

    ``owner`` is the container's host name, which survives a restart of the same container: a replica that
    the restart policy brings back takes its own queue and template cache again, even when a lower slot is
    free. A new replica (a scale-up, or one that replaces a removed one) takes the lowest free slot, so a slot
    a removed replica left is the next one used. Returns (the lock's file descriptor, the slot folder).
    """
    root.mkdir(parents=True, exist_ok=True)
    slots = [root / f"slot-{k}" for k in range(MAX_SLOTS)]
    if owner:
        mine = [slot for slot in slots if _owner(slot) == owner]
        slots = mine + [slot for slot in slots if slot not in mine]
    for slot in slots:
        fd = _lock(slot)
        if fd is not None:
            if owner:
                (slot / ".owner").write_text(owner + "\n")
            return fd, slot
    raise SystemExit(f"entrypoint: all {MAX_SLOTS} queue slots under {root} are taken")


def _owner(slot: Path) -> str | None:
    try:
        return (slot / ".owner").read_text().strip()
    except OSError:
        return None


def announce(names: list[str]) -> None:
    """Send one empty datagram to each named peer (to the discard port), best effort.

    A replica that the restart policy brings back has the same address on a new interface: a peer that sent to
    the old one (nginx) keeps the old hardware address in its neighbour table and sends into the void until the
    entry times out, several seconds. Sending to the peer makes this side ask for the peer's address, and the
    peer's kernel learns the new hardware address from that request at once.
    """
    for name in names:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"", (name, 9))
        except socket.gaierror:
            pass  # not started yet (the first start of the stack): it has no old address to forget
        except OSError as exc:
            print(f"entrypoint: could not announce to {name}: {exc}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    root = Path(os.environ.get("FLOWSINK_STATE_ROOT", "/var/lib/flowsink"))
    _fd, slot = claim_slot(root, os.uname().nodename)
    os.environ["FLOWSINK_NODE_RUN_DIR"] = str(slot)
    os.environ.setdefault("FLOWSINK_NODE_NAME", f"{os.uname().nodename}-{slot.name}")
    print(f"entrypoint: queue slot {slot}", file=sys.stderr, flush=True)
    announce([name for name in os.environ.get("FLOWSINK_STACK_ANNOUNCE", "").split(",") if name])
    command = argv or ["flowsink", "run"]
    os.execvp(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
