"""The searcher service: one replica of one gallery partition.

``service`` wires the parts and owns the lifecycle; ``apply`` builds the
index from the event stream; ``snapshots`` keeps the encrypted snapshot
file; ``membership`` follows the cluster layout (queue group, staging);
``search`` answers searches, micro-batched."""

from .service import SearcherService

__all__ = ["SearcherService"]
