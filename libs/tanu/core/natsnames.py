"""Every NATS subject, queue group, consumer, stream and bucket name, and nothing else."""

from __future__ import annotations

DETECT = "tanu.detect"
DETECT_QUEUE = "detector"
EMBED = "tanu.embed"
EMBED_QUEUE = "embedder"

STORE_PREFIX = "tanu.store"
STORE_QUEUE = "store"

EVENTS_STREAM = "TANU_EVENTS"
EVENTS_WILDCARD = "tanu.events.>"
# Every partition's template events (a staging searcher reads them all).
ALL_TEMPLATE_EVENTS = "tanu.events.templates.*"
CLUSTER_BUCKET = "tanu_cluster"
# Every gateway says it is up here, and hears the others (tanu.gateway.presence).
GATEWAYS_PRESENT = "tanu.gateways.present"


def store(op: str) -> str:
    """Request/reply subject of a store operation, e.g. ``tanu.store.put``."""
    return f"{STORE_PREFIX}.{op}"


def search(partition: int) -> str:
    """Request/reply subject of a partition's searchers."""
    return f"tanu.search.p{partition}"


def erasure_check(partitions: int, partition: int) -> str:
    """Every replica of one partition of a P-partition layout answers
    ErasureCheckRequest here (no queue group): which of the given template
    ids it has not yet erased. The layout is in the name, so a staging or
    retired replica never answers for the current layout's partition."""
    return f"tanu.erasure.check.n{partitions}.p{partition}"


def searcher_digest(partitions: int, partition: int) -> str:
    """Every replica of one partition of a P-partition layout answers
    DigestRequest here (no queue group), for ``tanu reconcile``."""
    return f"tanu.searcher.digest.n{partitions}.p{partition}"


def search_queue(partition: int) -> str:
    """Queue group of a partition's replicas: one of them answers each request."""
    return f"searcher-p{partition}"


def template_events(partition: int) -> str:
    """Stream subject carrying one partition's template events."""
    return f"tanu.events.templates.p{partition}"


def searcher_consumer(partition: int, replica: str) -> str:
    """Durable consumer name of one searcher replica."""
    return f"searcher-p{partition}-{replica}"


def staging_consumer(partitions: int, partition: int, replica: str) -> str:
    """Durable consumer name of a staging replica building a P-partition layout."""
    return f"searcher-n{partitions}-p{partition}-{replica}"


def searcher_stats(partitions: int, partition: int) -> str:
    """Every replica of one partition of a P-partition layout answers
    StatsRequest here (no queue group: all of them answer)."""
    return f"tanu.searcher.stats.n{partitions}.p{partition}"


def search_all() -> str:
    """Every partition's search subject (a wildcard, for permissions)."""
    return "tanu.search.*"


def erasure_check_all() -> str:
    """Every layout's and partition's erasure-check subject (a wildcard, for permissions)."""
    return "tanu.erasure.check.>"


def erasure_check_of(partition: int) -> str:
    """Partition k's erasure-check subject in every layout (a wildcard, for permissions)."""
    return f"tanu.erasure.check.*.p{partition}"


def searcher_digest_all() -> str:
    """Every layout's and partition's digest subject (a wildcard, for permissions)."""
    return "tanu.searcher.digest.>"


def searcher_digest_of(partition: int) -> str:
    """Partition k's digest subject in every layout (a wildcard, for permissions)."""
    return f"tanu.searcher.digest.*.p{partition}"


def searcher_stats_all() -> str:
    """Every layout's and partition's stats subject (a wildcard, for permissions)."""
    return "tanu.searcher.stats.>"


def searcher_stats_of(partition: int) -> str:
    """Partition k's stats subject in every layout (a wildcard, for permissions)."""
    return f"tanu.searcher.stats.*.p{partition}"
