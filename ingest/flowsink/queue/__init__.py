"""Disk-backed persistent queue between the UDP receivers and the pipeline workers (seam 2 in docs/design.md).

```python
from flowsink.queue import PersistentQueue, QueueFull, Entry
q = PersistentQueue(directory, max_bytes=..., segment_bytes=..., fsync_interval_ms=..., fsync_bytes=...)
seq = q.append(payload, source, arrival_ns)    # raises QueueFull(reason) when full or on ENOSPC
q.append_many([(payload, source, arrival_ns, source_port), ...])
q.sync(); entries = q.read(max_entries, timeout_s); q.ack(seq); q.stats(); q.close()
```
"""

from flowsink.queue.layout import partition_dirs, receiver_dir
from flowsink.queue.persistent import PersistentQueue, QueueFull, QueueLocked
from flowsink.queue.records import Entry

__all__ = ["Entry", "PersistentQueue", "QueueFull", "QueueLocked", "partition_dirs", "receiver_dir"]
