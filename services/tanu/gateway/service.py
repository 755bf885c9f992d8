"""The gateway: the public ``tanu.v1.Identity`` gRPC API, orchestrating each
request over NATS: face pipeline (``tanu.detect``/``tanu.embed``) for images,
scatter-gather to every partition's searchers for 1:N, and the store for
enrolment, verification, deletion and subject records.

Concurrent Identify requests (and enrolment de-duplication searches) are
micro-batched: one scatter to the partitions carries many queries, so each
searcher runs one FAISS call for all of them.
"""

from __future__ import annotations

import asyncio

import numpy as np

from tanu.core import bus, clusterconfig, errors, logs, subjects, vectors
from tanu.core.batching import MicroBatcher
from tanu.core.config import GatewayConfig
from tanu.core.metrics import Metrics
from tanu.core.service import ServiceBase
from tanu.face import quality
from tanu.v1 import (
    common_pb2,
    detector_pb2,
    embedder_pb2,
    identity_pb2,
    identity_pb2_grpc,
    searcher_pb2,
    store_pb2,
)

log = logs.get(__name__)

METRIC_ENUM = {"l2": common_pb2.METRIC_L2, "cosine": common_pb2.METRIC_COSINE}
# ~40 bytes a candidate on the wire: 16,384 of them stay far below 1 MiB.
MAX_CANDIDATES_PER_SCATTER = 16_384
# How long this gateway remembers the enrolments it accepted, for de-duplicating
# against those not yet searchable (normally milliseconds; minutes under lag).
RECENT_S = 120.0


class SearchResult:
    """Merged candidates of one query across the partitions that answered."""

    __slots__ = ("candidates", "missing", "gallery_size")

    def __init__(
        self, candidates: list[common_pb2.Candidate], missing: list[int], gallery_size: int
    ) -> None:
        self.candidates = candidates
        self.missing = missing
        self.gallery_size = gallery_size


class Gateway:
    """The orchestration behind the Identity API, transport-free."""

    def __init__(self, config: GatewayConfig, nc, metrics: Metrics) -> None:
        self.config = config
        self.layout = config.common.layout
        self.metrics = metrics
        self._nc = nc
        self.calibrated: dict[str, dict] = {}
        self._recent: list[tuple[object, str, np.ndarray, float]] = []
        self._recent_lock = asyncio.Lock()
        self._timeout = config.common.request_timeout_s
        self._batcher = MicroBatcher(
            self._search_batch,
            name="identify",
            max_batch=config.batch_max,
            max_wait_s=config.batch_wait_ms / 1000,
            max_in_flight=config.batch_in_flight,
            metrics=metrics,
        )

    async def close(self) -> None:
        await self._batcher.close()

    def threshold(self, kind: str, requested: float | None) -> tuple[float, str]:
        """The threshold to decide with, and where it came from: the
        request's, the one calibrated for this model (``tanu eval --apply``),
        or the configured default. De-duplication is a 1:N search and uses
        the identification calibration."""
        if requested is not None:
            return requested, "request"
        calibrated = self.calibrated.get("identify" if kind == "dedup" else kind)
        if calibrated is not None:
            return float(calibrated["threshold"]), "calibrated"
        c = self.config
        default = {
            "identify": c.identify_threshold,
            "verify": c.verify_threshold,
            "dedup": c.dedup_threshold,
        }[kind]
        return default, "default"

    async def refresh_thresholds(self) -> None:
        """Reads this model's calibrated thresholds from the cluster configuration."""
        found = await clusterconfig.read_thresholds(self._nc.jetstream(), self.layout.model_id)
        # A threshold is a number in one score space: never use a distance as a similarity.
        found = {
            k: v
            for k, v in found.items()
            if v.get("metric", self.layout.metric) == self.layout.metric
        }
        if found != self.calibrated:
            log.info("thresholds_loaded", model_id=self.layout.model_id,
                     **{k: v["threshold"] for k, v in found.items()})  # fmt: skip
        self.calibrated = found

    async def _call(
        self, subject: str, message, reply_type, operation: str, timeout: float | None = None
    ):
        return await bus.request(
            self._nc,
            subject,
            message,
            reply_type,
            self._timeout if timeout is None else timeout,
            operation=operation,
            metrics=self.metrics,
        )

    # --- samples ------------------------------------------------------

    async def probe(self, sample: common_pb2.BiometricSample, *, enrol: bool = False) -> np.ndarray:
        """The (1, d) template of a sample: validated as given, or made from
        the image by the face pipeline."""
        which = sample.WhichOneof("data")
        if which == "template":
            return vectors.parse_template(
                sample.template.vector, sample.template.model_id, self.layout
            )
        if which == "image":
            if not sample.image:
                raise errors.InvalidArgument("sample.image is empty")
            return await self._embed_image(sample.image, sample.face_selection, enrol)
        raise errors.InvalidArgument("sample is empty: send an image or a template")

    async def _detect(self, image: bytes) -> detector_pb2.DetectResponse:
        try:
            return await self._call(
                subjects.DETECT,
                detector_pb2.DetectRequest(image=image),
                detector_pb2.DetectResponse,
                "detect",
            )
        except errors.Unavailable:
            raise errors.Unavailable(
                "image samples need the face pipeline, and no detector is answering on tanu.detect; "
                "send a template or start the detector and embedder services"
            ) from None

    def _check_quality(self, face: detector_pb2.Face) -> None:
        """Enrolment's quality bar; the refusal names the measure that failed."""
        failed = quality.enrolment_failures(face.quality, self.config)
        if failed:
            raise errors.InvalidArgument("face quality too low for enrolment: " + "; ".join(failed))

    async def _embed_image(self, image: bytes, selection: int, enrol: bool) -> np.ndarray:
        found = await self._detect(image)
        faces = [f for f in found.faces if f.score >= self.config.min_face_score]
        if not faces:
            raise errors.InvalidArgument(f"no face found in the {found.width}x{found.height} image")
        single = enrol or selection == common_pb2.FACE_SELECTION_REQUIRE_SINGLE
        if single and len(faces) > 1:
            raise errors.InvalidArgument(
                f"{len(faces)} faces found in the image; {'enrolment' if enrol else 'this request'} needs exactly one"
            )
        face = faces[0]  # the detector lists the largest face first
        if enrol:
            self._check_quality(face)
        emb = await self._call(
            subjects.EMBED,
            embedder_pb2.EmbedRequest(image=image, faces=[face]),
            embedder_pb2.EmbedResponse,
            "embed",
        )
        if len(emb.templates) != 1:
            raise errors.Internal("the embedder returned no template")
        t = emb.templates[0]
        return vectors.parse_template(t.vector, t.model_id, self.layout, field="embedded template")

    # --- 1:N ----------------------------------------------------------

    def _top_k(self, top_k: int) -> int:
        if top_k == 0:
            return self.config.default_top_k
        if top_k > self.config.max_top_k:
            raise errors.InvalidArgument(
                f"top_k is {top_k}; the most allowed is {self.config.max_top_k}"
            )
        return top_k

    async def search(self, probe: np.ndarray, top_k: int) -> SearchResult:
        """Searches every partition (micro-batched with concurrent searches)."""
        return await self._batcher.submit((probe, top_k))

    async def _search_batch(self, items: list[tuple[np.ndarray, int]]) -> list[SearchResult]:
        # Every query of one scatter shares the largest top_k; keep each
        # partition's reply (queries x top_k candidates) well inside the NATS
        # message limit by splitting a batch that would exceed the budget.
        k = max(k for _, k in items)
        per_scatter = max(1, MAX_CANDIDATES_PER_SCATTER // k)
        if len(items) > per_scatter:
            chunks = await asyncio.gather(
                *(
                    self._search_batch(items[i : i + per_scatter])
                    for i in range(0, len(items), per_scatter)
                )
            )
            return [r for chunk in chunks for r in chunk]
        lay = self.layout
        req = searcher_pb2.SearchRequest(
            queries=vectors.to_bytes(np.concatenate([p for p, _ in items], axis=0)),
            count=len(items),
            top_k=k,
            model_id=lay.model_id,
        )
        parts = list(range(lay.partitions))
        replies = await bus.scatter(
            self._nc,
            [subjects.search(p) for p in parts],
            req,
            searcher_pb2.SearchResponse,
            self.config.search_timeout_s,
            operation="search",
            metrics=self.metrics,
        )
        ok = [r for r in replies if isinstance(r, searcher_pb2.SearchResponse)]
        missing = [
            p
            for p, r in zip(parts, replies, strict=True)
            if not isinstance(r, searcher_pb2.SearchResponse)
        ]
        if missing:
            self.metrics.search_partial.inc()
            for p, r in zip(parts, replies, strict=True):
                if isinstance(r, errors.TanuError):
                    log.warning("partition_missing", partition=p, reason=r.message)
        size = sum(r.gallery_size for r in ok)
        reverse = vectors.best_first(lay.metric)
        out = []
        for i, (_, kk) in enumerate(items):
            cands = [c for r in ok for c in r.results[i].candidates]
            cands.sort(key=lambda c: c.score, reverse=reverse)
            out.append(SearchResult(cands[:kk], missing, size))
        return out

    def _decide(self, candidates, threshold: float) -> int:
        matched = False
        for c in candidates:
            c.is_match = vectors.is_match(c.score, threshold, self.layout.metric)
            matched |= c.is_match
        return common_pb2.DECISION_MATCH if matched else common_pb2.DECISION_NO_MATCH

    async def identify(self, req: identity_pb2.IdentifyRequest) -> identity_pb2.IdentifyResponse:
        top_k = self._top_k(req.top_k)
        threshold, source = self.threshold(
            "identify", req.threshold if req.HasField("threshold") else None
        )
        probe = await self.probe(req.sample)
        res = await self.search(probe, top_k)
        if res.missing and req.require_complete:
            raise errors.Unavailable(
                f"partitions {res.missing} did not answer in time; the search would not cover the whole gallery"
            )
        decision = self._decide(res.candidates, threshold)
        if res.candidates:
            self.metrics.match_score.labels("identify").observe(res.candidates[0].score)
        return identity_pb2.IdentifyResponse(
            candidates=res.candidates,
            decision=decision,
            threshold=threshold,
            threshold_source=source,
            metric=METRIC_ENUM[self.layout.metric],
            complete=not res.missing,
            missing_partitions=res.missing,
            gallery_size=res.gallery_size,
            model_id=self.layout.model_id,
        )

    # --- enrolment ----------------------------------------------------

    async def enroll(
        self, req: identity_pb2.EnrollRequest, deadline_s: float | None
    ) -> identity_pb2.EnrollResponse:
        subject_id = vectors.check_subject_id(req.subject_id)
        probe = await self.probe(req.sample, enrol=True)
        threshold, source = self.threshold("dedup", None)
        res = await self.search(probe, 1)
        if res.missing:
            raise errors.Unavailable(
                f"cannot de-duplicate: partitions {res.missing} did not answer; nothing was enrolled"
            )
        reply = identity_pb2.EnrollResponse(threshold=threshold, threshold_source=source)
        metric = self.layout.metric
        async with (
            self._recent_lock
        ):  # check and record atomically: concurrent enrolments see each other
            dup = self._recent_match(probe, threshold)
            if (
                dup is None
                and res.candidates
                and vectors.is_match(res.candidates[0].score, threshold, metric)
            ):
                dup = res.candidates[0]
            if dup is not None:
                if dup.subject_id == subject_id:
                    raise errors.AlreadyExists(f"subject {subject_id!r} is already enrolled")
                dup.is_match = True
                reply.duplicate_of.CopyFrom(dup)
                if not req.allow_duplicate:
                    log.info("enrol_duplicate_refused", partition=dup.partition)
                    return reply
            token = object()
            self._recent.append((token, subject_id, probe, asyncio.get_running_loop().time()))
        put = store_pb2.PutSubjectRequest(
            subject_id=subject_id,
            templates=[
                common_pb2.Template(vector=vectors.to_bytes(probe), model_id=self.layout.model_id)
            ],
        )
        try:
            subject = await self._call(subjects.store("put"), put, common_pb2.Subject, "store.put")
        except BaseException:
            self._recent = [r for r in self._recent if r[0] is not token]
            raise
        reply.enrolled = True
        reply.subject.CopyFrom(subject)
        if req.wait_indexed:
            reply.indexed = await self._wait_indexed(subject, probe, deadline_s)
        return reply

    def _recent_match(self, probe: np.ndarray, threshold: float) -> common_pb2.Candidate | None:
        """The best match among enrolments this gateway accepted in the last
        RECENT_S seconds: they may not be searchable yet (store → stream →
        searcher), and two enrolments of one face arriving together must not
        both pass de-duplication. (Across gateways the window remains; see
        the README.)"""
        now = asyncio.get_running_loop().time()
        self._recent = [r for r in self._recent if now - r[3] < RECENT_S]
        if not self._recent:
            return None
        gallery = np.concatenate([r[2] for r in self._recent], axis=0)
        scores = vectors.scores(probe, gallery, self.layout.metric)
        i = int(np.argmax(scores) if vectors.best_first(self.layout.metric) else np.argmin(scores))
        if not vectors.is_match(float(scores[i]), threshold, self.layout.metric):
            return None
        sid = self._recent[i][1]
        return common_pb2.Candidate(
            subject_id=sid,
            score=float(scores[i]),
            partition=vectors.partition_of(sid, self.layout.partitions),
        )

    async def _wait_indexed(
        self, subject: common_pb2.Subject, probe: np.ndarray, deadline_s: float | None
    ) -> bool:
        """Polls the subject's partition until its searchers return it. Gives
        up (indexed=false) before the caller's deadline, so a committed
        enrolment is never reported as a failure."""
        loop = asyncio.get_running_loop()
        budget = (deadline_s - 0.25) if deadline_s is not None else 10.0
        end = loop.time() + max(0.0, budget)
        req = searcher_pb2.SearchRequest(
            queries=vectors.to_bytes(probe), count=1, top_k=64, model_id=self.layout.model_id
        )
        delay = 0.005
        while (left := end - loop.time()) > 0:
            try:
                r = await self._call(
                    subjects.search(subject.partition), req, searcher_pb2.SearchResponse, "search",
                    timeout=min(left, self._timeout),
                )  # fmt: skip
                if any(c.subject_id == subject.subject_id for c in r.results[0].candidates):
                    return True
            except errors.TanuError:
                pass
            await asyncio.sleep(min(delay, max(0.0, end - loop.time())))
            delay = min(delay * 2, 0.1)
        return False

    # --- 1:1, records, deletion ------------------------------------------

    async def verify(self, req: identity_pb2.VerifyRequest) -> identity_pb2.VerifyResponse:
        subject_id = vectors.check_subject_id(req.subject_id)
        threshold, source = self.threshold(
            "verify", req.threshold if req.HasField("threshold") else None
        )
        probe = await self.probe(req.sample)
        held = await self._call(
            subjects.store("templates"),
            store_pb2.GetTemplatesRequest(subject_id=subject_id),
            store_pb2.GetTemplatesResponse,
            "store.templates",
        )
        lay = self.layout
        usable = [t.template.vector for t in held.templates if t.template.model_id == lay.model_id]
        if not usable:
            raise errors.FailedPrecondition(
                f"subject {subject_id!r} has no {lay.model_id!r} templates to compare with"
            )
        gallery = vectors.from_bytes(b"".join(usable), lay.dimension)
        s = vectors.scores(probe, gallery, lay.metric)
        best = float(s.max() if vectors.best_first(lay.metric) else s.min())
        self.metrics.match_score.labels("verify").observe(best)
        match = vectors.is_match(best, threshold, lay.metric)
        return identity_pb2.VerifyResponse(
            decision=common_pb2.DECISION_MATCH if match else common_pb2.DECISION_NO_MATCH,
            score=best,
            threshold=threshold,
            threshold_source=source,
            metric=METRIC_ENUM[lay.metric],
            model_id=lay.model_id,
        )

    async def delete(self, req: identity_pb2.DeleteRequest) -> identity_pb2.DeleteResponse:
        subject_id = vectors.check_subject_id(req.subject_id)
        r = await self._call(
            subjects.store("delete"),
            store_pb2.DeleteSubjectRequest(subject_id=subject_id, reason=req.reason),
            store_pb2.DeleteSubjectResponse,
            "store.delete",
        )
        return identity_pb2.DeleteResponse(
            subject_id=subject_id,
            templates_removed=len(r.template_ids),
            deleted_at_ms=r.deleted_at_ms,
            partition=r.subject.partition,
        )

    async def get_subject(self, req: identity_pb2.GetSubjectRequest) -> common_pb2.Subject:
        return await self._call(
            subjects.store("get"),
            store_pb2.GetSubjectRecordRequest(subject_id=vectors.check_subject_id(req.subject_id)),
            common_pb2.Subject,
            "store.get",
        )


class IdentityServicer(identity_pb2_grpc.IdentityServicer):
    def __init__(self, gw: Gateway) -> None:
        self._gw = gw

    async def Enroll(self, request, context):
        return await self._gw.enroll(request, context.time_remaining())

    async def Verify(self, request, context):
        return await self._gw.verify(request)

    async def Identify(self, request, context):
        return await self._gw.identify(request)

    async def Delete(self, request, context):
        return await self._gw.delete(request)

    async def GetSubject(self, request, context):
        return await self._gw.get_subject(request)


class GatewayService(ServiceBase):
    """A running gateway: NATS connection and the Identity gRPC server."""

    name = "gateway"

    def __init__(self, config: GatewayConfig, metrics: Metrics | None = None) -> None:
        super().__init__(config.common, metrics)
        self.config = config
        self.gateway: Gateway | None = None
        self._refresh: asyncio.Task[None] | None = None

    async def start(self) -> GatewayService:
        nc = await self.connect("tanu-gateway")
        await clusterconfig.ensure_layout(nc.jetstream(), self.config.common.layout, "gateway")
        self.gateway = Gateway(self.config, nc, self.metrics)
        await self.gateway.refresh_thresholds()
        self._refresh = asyncio.create_task(self._refresh_loop(), name="thresholds")
        await self.serve_grpc(
            identity_pb2_grpc.add_IdentityServicer_to_server,
            IdentityServicer(self.gateway),
            "tanu.v1.Identity",
        )
        return self

    async def _refresh_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.threshold_refresh_s)
            try:
                await self.gateway.refresh_thresholds()
            except Exception as exc:  # noqa: BLE001 - keep the last known thresholds
                log.warning("thresholds_refresh_failed", error=str(exc))

    async def release(self) -> None:
        if self._refresh:
            self._refresh.cancel()
        if self.gateway:
            await self.gateway.close()
