"""Disk-backed persistent queue between the UDP receivers and the pipeline workers (seam 2 in docs/design.md).

```python
from flowsink.queue import PersistentQueue, QueueFull, Entry
q = PersistentQueue(directory, QueueSettings(...))   # or keyword overrides: PersistentQueue(d, max_bytes=...)
seq = q.append(payload, source, arrival_ns)    # raises QueueFull(reason) when full or on ENOSPC
q.append_many([(payload, source, arrival_ns, source_port), ...])
q.sync(); entries = q.read(max_entries, timeout_s); q.ack(seq); q.stats(); q.close()
```
"""

from flowsink.queue.layout import partition_dirs, receiver_dir
from flowsink.queue.persistent import PersistentQueue, QueueFull, QueueLocked, open_partition
from flowsink.queue.records import Entry
from flowsink.queue.settings import QueueSettings

__all__ = [
    "Entry",
    "PersistentQueue",
    "QueueFull",
    "QueueLocked",
    "QueueSettings",
    "open_partition",
    "partition_dirs",
    "receiver_dir",
]
