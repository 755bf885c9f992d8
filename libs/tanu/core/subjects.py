"""Every NATS subject, queue group, stream and bucket name, in one place."""

from __future__ import annotations

DETECT = "tanu.detect"
DETECT_QUEUE = "detector"
EMBED = "tanu.embed"
EMBED_QUEUE = "embedder"

STORE_PREFIX = "tanu.store"
STORE_QUEUE = "store"

EVENTS_STREAM = "TANU_EVENTS"
EVENTS_WILDCARD = "tanu.events.>"
CLUSTER_BUCKET = "tanu_cluster"


def store(op: str) -> str:
    """Request/reply subject of a store operation, e.g. ``tanu.store.put``."""
    return f"{STORE_PREFIX}.{op}"


def search(partition: int) -> str:
    """Request/reply subject of a partition's searchers."""
    return f"tanu.search.p{partition}"


def erasure(partition: int) -> str:
    """Every replica of the partition answers here (no queue group): which of
    the given template ids it has not yet erased from its index and snapshot."""
    return f"tanu.erasure.p{partition}"


def search_queue(partition: int) -> str:
    """Queue group of a partition's replicas: one of them answers each request."""
    return f"searcher-p{partition}"


def template_events(partition: int) -> str:
    """Stream subject carrying one partition's template events."""
    return f"tanu.events.templates.p{partition}"


def searcher_consumer(partition: int, replica: str) -> str:
    """Durable consumer name of one searcher replica."""
    return f"searcher-p{partition}-{replica}"
