"""Which partition a customer's events live on.

The same function as Kafka's default partitioner (murmur2 of the key), so an upstream
system that keys its own messages by ``customer_id`` already lands each customer on the
partition where its state lives, and every worker agrees without coordination.
"""

from __future__ import annotations

from functools import lru_cache

from kafka.partitioner.default import murmur2


@lru_cache(maxsize=65_536)
def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partition for ``key`` among ``partitions`` (cached: the hash is
    pure Python and customers recur)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
