"""The pure gallery index of one partition: FAISS (CPU, or a device copy
with tombstones), the array id map, and the encrypted snapshot format. No
NATS here: the searcher service feeds it events and queries."""

from .partition import PartitionIndex

__all__ = ["PartitionIndex"]
