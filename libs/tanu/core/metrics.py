"""Prometheus metrics, one registry per service instance, served on their own
port. Every label has bounded values (service, method, code, HTTP status,
operation, reason, action, partition, replica, batcher, model, route
template, data path, and tenant, which comes from configuration); never a
subject id."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(0, 41))


@dataclass
class Metrics:
    """Every metric a Tanu service exports. Unused ones simply stay at zero."""

    registry: CollectorRegistry
    rpc_requests: Counter
    rpc_duration: Histogram
    nats_request_duration: Histogram
    batch_size: Histogram
    batch_queue_depth: Gauge
    faiss_search_duration: Histogram
    gallery_templates: Gauge
    stream_lag: Gauge
    applied_sequence: Gauge
    outbox_pending: Gauge
    events_published: Counter
    relay_errors: Counter
    store_refused: Counter
    relay_dead_letters: Counter
    relay_dead_letters_held: Gauge
    relay_flush_late: Counter
    match_score: Histogram
    search_partial: Counter
    search_behind: Counter
    inference_duration: Histogram
    snapshot_timestamp: Gauge
    denials: Counter
    rate_limited: Counter
    gateways_present: Gauge
    audit_entries: Counter
    audit_checkpoint_timestamp: Gauge
    erasures: Counter
    verify_lockouts: Counter
    biometric_lock_changes: Counter
    key_rewraps: Counter
    disk_free: Gauge
    http_requests: Counter
    http_duration: Histogram

    @classmethod
    def create(cls, latency_buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Metrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            rpc_requests=Counter(
                "tanu_rpc_requests_total",
                "RPCs handled, by method and status code.",
                ["service", "method", "code"],
                registry=r,
            ),
            rpc_duration=Histogram(
                "tanu_rpc_duration_seconds",
                "RPC handling time.",
                ["service", "method"],
                buckets=latency_buckets,
                registry=r,
            ),
            nats_request_duration=Histogram(
                "tanu_nats_request_duration_seconds",
                "NATS request/reply round trip, by operation.",
                ["operation"],
                buckets=latency_buckets,
                registry=r,
            ),
            batch_size=Histogram(
                "tanu_batch_size",
                "Items per micro-batch.",
                ["batcher"],
                buckets=SIZE_BUCKETS,
                registry=r,
            ),
            batch_queue_depth=Gauge(
                "tanu_batch_queue_depth",
                "Items waiting for a micro-batch.",
                ["batcher"],
                registry=r,
            ),
            faiss_search_duration=Histogram(
                "tanu_faiss_search_seconds",
                "Time in one FAISS search call.",
                ["partition"],
                buckets=latency_buckets,
                registry=r,
            ),
            gallery_templates=Gauge(
                "tanu_gallery_templates",
                "Templates in a searcher's index.",
                ["partition", "replica"],
                registry=r,
            ),
            stream_lag=Gauge(
                "tanu_stream_lag_events",
                "Events in the stream not yet applied by a searcher.",
                ["partition", "replica"],
                registry=r,
            ),
            applied_sequence=Gauge(
                "tanu_applied_sequence",
                "Last stream sequence a searcher applied.",
                ["partition", "replica"],
                registry=r,
            ),
            outbox_pending=Gauge(
                "tanu_outbox_pending_events",
                "Store outbox events not yet published.",
                registry=r,
            ),
            events_published=Counter(
                "tanu_events_published_total",
                "Outbox events published to JetStream.",
                registry=r,
            ),
            store_refused=Counter(
                "tanu_store_refused_total",
                "Writes the store refused before writing anything, by reason (overloaded: its "
                "database queue was full, TANU_STORE_MAX_QUEUE).",
                ["reason"],
                registry=r,
            ),
            relay_errors=Counter(
                "tanu_relay_errors_total",
                "Outbox relay rounds that failed and were retried, by kind (database, bus).",
                ["kind"],
                registry=r,
            ),
            relay_dead_letters=Counter(
                "tanu_relay_dead_letters_total",
                "Outbox events that can never be published, moved to the dead-letter table.",
                registry=r,
            ),
            relay_dead_letters_held=Gauge(
                "tanu_relay_dead_letters_held",
                "Events in the store's dead-letter table (waiting for an operator).",
                registry=r,
            ),
            relay_flush_late=Counter(
                "tanu_relay_flush_late_total",
                "Writes acknowledged before their events were on the stream (the flush bound "
                "TANU_RELAY_FLUSH_S passed): a search right after may not see them yet.",
                registry=r,
            ),
            match_score=Histogram(
                "tanu_match_score",
                "Best score per verify/identify request.",
                ["operation"],
                buckets=SCORE_BUCKETS,
                registry=r,
            ),
            search_partial=Counter(
                "tanu_search_partial_total",
                "Searches answered without every partition.",
                registry=r,
            ),
            search_behind=Counter(
                "tanu_search_behind_total",
                "Partitions left out of a search because their searchers had not yet applied "
                "every acknowledged write (read-your-writes).",
                registry=r,
            ),
            snapshot_timestamp=Gauge(
                "tanu_snapshot_timestamp_seconds",
                "When a searcher last wrote its snapshot (Unix time; age = time() - this).",
                ["partition", "replica"],
                registry=r,
            ),
            inference_duration=Histogram(
                "tanu_model_inference_seconds",
                "Time in one model run (a whole micro-batch).",
                ["model"],
                buckets=latency_buckets,
                registry=r,
            ),
            denials=Counter(
                "tanu_denials_total",
                "Requests refused by authentication, authorisation, consent or abuse limits, "
                "by operation and reason (unauthenticated, scope, purpose, consent, "
                "rate_limited, lockout, biometric_lock).",
                ["service", "operation", "reason"],
                registry=r,
            ),
            rate_limited=Counter(
                "tanu_rate_limited_total",
                "Requests refused by a tenant's rate limit (tenants come from configuration).",
                ["tenant"],
                registry=r,
            ),
            gateways_present=Gauge(
                "tanu_gateways_present",
                "Gateways this one hears are up, itself included; each enforces this share "
                "of every tenant's rate limit.",
                registry=r,
            ),
            audit_entries=Counter(
                "tanu_audit_entries_total",
                "Entries appended to the hash-chained audit log.",
                registry=r,
            ),
            audit_checkpoint_timestamp=Gauge(
                "tanu_audit_checkpoint_timestamp_seconds",
                "When the audit log was last sealed by a signed checkpoint (Unix time).",
                registry=r,
            ),
            erasures=Counter(
                "tanu_erasures_total",
                "Subjects erased (templates removed, data key destroyed), by reason.",
                ["reason"],
                registry=r,
            ),
            verify_lockouts=Counter(
                "tanu_verify_lockouts_total",
                "Subjects locked after repeated failed verifications.",
                registry=r,
            ),
            biometric_lock_changes=Counter(
                "tanu_biometric_lock_changes_total",
                "Biometric locks set or lifted at a subject's request, by action.",
                ["action"],
                registry=r,
            ),
            key_rewraps=Counter(
                "tanu_key_rewraps_total",
                "Subject data keys re-wrapped under a new master key.",
                registry=r,
            ),
            http_requests=Counter(
                "tanu_http_requests_total",
                "REST facade requests, by route template, method and HTTP status.",
                ["route", "method", "status"],
                registry=r,
            ),
            http_duration=Histogram(
                "tanu_http_request_duration_seconds",
                "REST facade request handling time, by route template and method.",
                ["route", "method"],
                buckets=latency_buckets,
                registry=r,
            ),
            disk_free=Gauge(
                "tanu_disk_free_bytes",
                "Free bytes on the file system holding a service's data.",
                ["path"],
                registry=r,
            ),
        )

    def __post_init__(self) -> None:
        # process_resident_memory_bytes, process_cpu_seconds_total, ... and
        # python_info in every service's own registry.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def watch_disk(self, path: str) -> None:
        """Reports the free space under ``path`` on every scrape."""

        def free() -> float:
            p = os.path.abspath(path)
            while not os.path.exists(p) and os.path.dirname(p) != p:
                p = os.path.dirname(p)  # not created yet: its file system all the same
            return float(shutil.disk_usage(p).free)

        self.disk_free.labels(path).set_function(free)

    def sample(self, name: str, **labels: str) -> float | None:
        """The current value of one sample in this registry, by its exported
        name and labels, e.g. ``sample("tanu_rpc_requests_total",
        service="gateway", method="Identify", code="OK")``; None while no such
        sample exists (a labelled counter that was never incremented). What a
        scrape would read, without the HTTP round trip."""
        return self.registry.get_sample_value(name, labels)

    def serve(self, port: int, host: str = "127.0.0.1") -> int | None:
        """Serves /metrics on ``port`` (0: a free one; -1: not at all); returns the port."""
        if port < 0:
            return None
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_address[1])
