"""Prometheus metrics, one registry per service instance, served on their own
port. Labels are bounded: service, method, code, partition, replica, batcher;
never a subject id."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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
    match_score: Histogram
    search_partial: Counter
    inference_duration: Histogram
    snapshot_timestamp: Gauge

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
        )

    def serve(self, port: int, host: str = "0.0.0.0") -> int | None:
        """Serves /metrics on ``port`` (0: a free one; -1: not at all); returns the port."""
        if port < 0:
            return None
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_address[1])
