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
import json
import time

import numpy as np

from tanu.core import bus, clusterconfig, errors, ids, logs, natsnames, vectors
from tanu.core.batching import MicroBatcher
from tanu.core.config import GatewayConfig
from tanu.core.metrics import Metrics
from tanu.core.service import ServiceBase
from tanu.face import quality
from tanu.policy.subjects import RELATIONSHIPS, is_minor, parse_dob
from tanu.v1 import (
    common_pb2,
    detector_pb2,
    embedder_pb2,
    identity_pb2,
    identity_pb2_grpc,
    searcher_pb2,
    store_pb2,
)

from .guard import Call, Denied, Guard, RetryLater

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
        self.layout_problem = ""  # set when the cluster's layout no longer matches
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
                natsnames.DETECT,
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
            natsnames.EMBED,
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
        if self.layout_problem:
            raise errors.Unavailable(self.layout_problem)
        return await self._batcher.submit((probe, top_k))

    async def check_layout(self) -> bool:
        """Compares this gateway's layout with the cluster's (which a
        rebalance switches): a gateway searching another partition count
        would answer from part of the gallery and call it complete, so it
        refuses searches until restarted with the cluster's layout."""
        have, _ = await clusterconfig.read_layout(self._nc.jetstream())
        detail = self.layout.differences(have, "cluster", "this gateway") if have else ""
        problem = (
            f"the cluster's layout changed ({detail}); this gateway refuses to search until "
            "restarted with the cluster's layout"
            if detail
            else ""
        )
        if problem != self.layout_problem:
            (log.error if problem else log.info)("layout_checked", problem=problem or "none")
        self.layout_problem = problem
        return not problem

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
            [natsnames.search(p) for p in parts],
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

    async def _statuses(self, subject_ids: list[str]) -> dict[str, store_pb2.SubjectStatus]:
        if not subject_ids:
            return {}
        r = await self._call(
            natsnames.store("status"), store_pb2.StatusRequest(subject_ids=subject_ids),
            store_pb2.StatusResponse, "store.status",
        )  # fmt: skip
        return {st.subject_id: st for st in r.statuses}

    async def _usable(self, candidates, purpose: str) -> list[common_pb2.Candidate]:
        """Drops the candidates that may not be matched for this purpose:
        no consent to it, a biometric lock, or erased meanwhile."""
        st = await self._statuses(sorted({c.subject_id for c in candidates}))
        ok = []
        for c in candidates:
            s = st.get(c.subject_id)
            if s and s.enrolled and purpose in s.purposes and not s.biometric_locked:
                ok.append(c)
        return ok

    async def identify(
        self, req: identity_pb2.IdentifyRequest, call: Call
    ) -> identity_pb2.IdentifyResponse:
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
        cands = await self._usable(res.candidates, call.purpose)
        decision = self._decide(cands, threshold)
        if cands:
            self.metrics.match_score.labels("identify").observe(cands[0].score)
        call.detail = {"candidates": len(cands), "withheld": len(res.candidates) - len(cands)}
        # Each returned candidate is a use of that subject's data: their
        # access history shows it.
        call.extra = [(c.subject_id, "match" if c.is_match else "candidate") for c in cands]
        return identity_pb2.IdentifyResponse(
            candidates=cands,
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

    async def _consent(
        self,
        subject_id: str,
        dob: str,
        grant: identity_pb2.ConsentGrant,
        call: Call,
        sample: common_pb2.BiometricSample | None,
    ) -> common_pb2.Consent:
        """The consent record to store, once its giver is established: the
        subject (an adult), or for a minor a guardian who is an enrolled
        adult, states a relationship, and matches their own face 1:1."""
        purposes = sorted({p.strip() for p in grant.purposes if p.strip()})
        if not purposes:
            raise errors.InvalidArgument(
                "consent.purposes is empty: name what the data may be used for"
            )
        if not grant.evidence_ref:
            raise errors.InvalidArgument(
                "consent.evidence_ref is empty: where is the signed consent kept?"
            )
        minor = is_minor(dob)
        if not minor:
            if sample is not None:
                await self._verify_person(subject_id, sample, "the subject")
            return common_pb2.Consent(
                purposes=purposes, given_by="self", evidence_ref=grant.evidence_ref,
                tenant=call.principal.tenant_id, client=call.principal.client,
            )  # fmt: skip
        if not grant.guardian_subject_id:
            raise Denied(
                f"subject {subject_id!r} is under 18 (born {dob}): a guardian's consent is "
                "required (consent.guardian_subject_id, relationship, guardian_sample)",
                "consent",
            )
        if grant.relationship not in RELATIONSHIPS:
            raise errors.InvalidArgument(
                f"consent.relationship must be one of {list(RELATIONSHIPS)}, got {grant.relationship!r}"
            )
        gid = ids.check_subject_id(grant.guardian_subject_id)
        gst = (await self._statuses([gid]))[gid]
        if not gst.enrolled:
            raise Denied(
                f"guardian {gid!r} is not enrolled; a guardian must be an enrolled adult", "consent"
            )
        if is_minor(gst.date_of_birth):
            raise Denied(f"guardian {gid!r} is under 18 and cannot consent for another", "consent")
        if not grant.HasField("guardian_sample"):
            raise errors.InvalidArgument(
                "consent.guardian_sample is required to verify the guardian"
            )
        await self._verify_person(gid, grant.guardian_sample, "the guardian")
        call.detail = {**(call.detail or {}), "guardian_subject_id": gid,
                       "relationship": grant.relationship}  # fmt: skip
        return common_pb2.Consent(
            purposes=purposes, given_by="guardian", guardian_subject_id=gid,
            relationship=grant.relationship, evidence_ref=grant.evidence_ref,
            tenant=call.principal.tenant_id, client=call.principal.client,
        )  # fmt: skip

    async def _verify_person(
        self, subject_id: str, sample: common_pb2.BiometricSample, who: str
    ) -> float:
        """1:1 check that ``sample`` is ``subject_id`` (even while locked:
        the subject proving who they are to manage their own data)."""
        probe = await self.probe(sample)
        held = await self._templates(subject_id)
        best, match = self._compare(probe, held, self.threshold("verify", None)[0])
        await self._record_outcome(subject_id, match)
        if not match:
            raise Denied(f"the face does not match {who} ({subject_id!r})", "identity")
        return best

    async def _record_outcome(self, subject_id: str, matched: bool) -> None:
        """Tells the store a 1:1 result: failures count towards the lockout."""
        await self._call(
            natsnames.store("verification"),
            store_pb2.VerificationOutcome(subject_id=subject_id, matched=matched),
            store_pb2.SubjectStatus, "store.verification",
        )  # fmt: skip

    async def _enrolled(self, subject_id: str) -> store_pb2.SubjectStatus:
        """The subject's status; NotFound when it is not enrolled."""
        st = (await self._statuses([subject_id]))[subject_id]
        if not st.enrolled:
            raise errors.NotFound(f"subject {subject_id!r} is not enrolled")
        return st

    async def _templates(self, subject_id: str) -> store_pb2.GetTemplatesResponse:
        return await self._call(
            natsnames.store("templates"), store_pb2.GetTemplatesRequest(subject_id=subject_id),
            store_pb2.GetTemplatesResponse, "store.templates",
        )  # fmt: skip

    def _compare(
        self, probe: np.ndarray, held: store_pb2.GetTemplatesResponse, threshold: float
    ) -> tuple[float, bool]:
        lay = self.layout
        usable = [t.template.vector for t in held.templates if t.template.model_id == lay.model_id]
        if not usable:
            raise errors.FailedPrecondition(
                f"subject {held.subject.subject_id!r} has no {lay.model_id!r} templates to compare with"
            )
        gallery = vectors.from_bytes(b"".join(usable), lay.dimension)
        s = vectors.scores(probe, gallery, lay.metric)
        best = float(s.max() if vectors.best_first(lay.metric) else s.min())
        return best, vectors.is_match(best, threshold, lay.metric)

    async def enroll(
        self, req: identity_pb2.EnrollRequest, deadline_s: float | None, call: Call
    ) -> identity_pb2.EnrollResponse:
        subject_id = ids.check_subject_id(req.subject_id)
        if not req.date_of_birth:
            raise errors.InvalidArgument("date_of_birth is required (YYYY-MM-DD)")
        parse_dob(req.date_of_birth)
        if not req.HasField("consent"):
            raise Denied("enrolment needs a consent record (consent); none was given", "consent")
        consent = await self._consent(subject_id, req.date_of_birth, req.consent, call, None)
        if call.purpose not in consent.purposes:
            raise Denied(
                f"purpose {call.purpose!r} is not among the consented purposes {list(consent.purposes)}",
                "consent",
            )
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
            date_of_birth=req.date_of_birth,
            consent=consent,
            templates=[
                common_pb2.Template(vector=vectors.to_bytes(probe), model_id=self.layout.model_id)
            ],
        )
        try:
            subject = await self._call(natsnames.store("put"), put, common_pb2.Subject, "store.put")
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
            partition=ids.partition_of(sid, self.layout.partitions),
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
                    natsnames.search(subject.partition), req, searcher_pb2.SearchResponse, "search",
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

    async def verify(
        self, req: identity_pb2.VerifyRequest, call: Call
    ) -> identity_pb2.VerifyResponse:
        subject_id = ids.check_subject_id(req.subject_id)
        threshold, source = self.threshold(
            "verify", req.threshold if req.HasField("threshold") else None
        )
        held = await self._templates(subject_id)
        st = held.status
        if st.biometric_locked:
            raise Denied(
                f"subject {subject_id!r} has locked the use of their biometrics", "biometric_lock"
            )
        if st.verification_locked:
            raise Denied(
                f"subject {subject_id!r} is locked after {st.failed_verifications} failed "
                "verifications; the subject must unlock (SetBiometricLock locked=false)",
                "lockout",
            )
        wait_ms = st.retry_after_ms - int(time.time() * 1000)
        if wait_ms > 0:
            raise RetryLater(
                f"subject {subject_id!r}: {st.failed_verifications} failed verifications in a "
                f"row; retry in {wait_ms / 1000:.1f}s"
            )
        if call.purpose not in st.purposes:
            raise Denied(
                f"subject {subject_id!r} has not consented to {call.purpose!r} "
                f"(consented: {list(st.purposes)})",
                "consent",
            )
        probe = await self.probe(req.sample)
        best, match = self._compare(probe, held, threshold)
        self.metrics.match_score.labels("verify").observe(best)
        await self._record_outcome(subject_id, match)
        call.result = "match" if match else "no_match"
        lay = self.layout
        return identity_pb2.VerifyResponse(
            decision=common_pb2.DECISION_MATCH if match else common_pb2.DECISION_NO_MATCH,
            score=best,
            threshold=threshold,
            threshold_source=source,
            metric=METRIC_ENUM[lay.metric],
            model_id=lay.model_id,
        )

    async def delete(
        self, req: identity_pb2.DeleteRequest, call: Call
    ) -> identity_pb2.DeleteResponse:
        subject_id = ids.check_subject_id(req.subject_id)
        r, receipt = await self.erase(subject_id, "lawful_delete: " + req.reason[:200], call)
        return identity_pb2.DeleteResponse(
            subject_id=subject_id,
            templates_removed=len(r.template_ids),
            deleted_at_ms=r.deleted_at_ms,
            partition=r.subject.partition,
            receipt=receipt,
        )

    async def erase(
        self, subject_id: str, reason: str, call: Call
    ) -> tuple[store_pb2.DeleteSubjectResponse, common_pb2.ErasureReceipt]:
        """Erases a subject everywhere and returns the signed receipt: the
        store's transaction (templates, consents, data key), the stream's
        template messages, and each searcher replica's confirmation that its
        index and snapshot no longer hold the vectors."""
        r = await self._call(
            natsnames.store("delete"),
            store_pb2.DeleteSubjectRequest(subject_id=subject_id, reason=reason,
                                           tenant=call.principal.tenant_id,
                                           client=call.principal.client),
            store_pb2.DeleteSubjectResponse, "store.delete",
        )  # fmt: skip
        replicas = await self._confirm_erasure(r.subject.partition, list(r.template_ids))
        complete = bool(replicas) and all(x["index_removed"] and x["snapshot_purged"]
                                          for x in replicas)  # fmt: skip
        body = {
            "receipt_id": ids.receipt_id(subject_id, r.deleted_at_ms),
            "subject_id": subject_id,
            "reason": reason,
            "requested_by": {"tenant": call.principal.tenant_id, "client": call.principal.client},
            "erased_at_ms": r.deleted_at_ms,
            "partition": r.subject.partition,
            "store": {
                "templates_removed": list(r.template_ids),
                "consents_removed": r.consents_removed,
                "data_key_destroyed": {"data_key_id": r.data_key_id,
                                       "master_key_id": r.master_key_id},
                "audit_seq": r.audit_seq,
            },
            "event_stream": {
                "template_messages_deleted": r.stream_messages,
                "removal_event_id": r.removal_event_id,
            },
            "searchers": replicas,
            "complete": complete,
        }  # fmt: skip
        receipt = await self._call(
            natsnames.store("receipt"),
            store_pb2.SealReceiptRequest(
                receipt_id=body["receipt_id"], subject_id=subject_id,
                body_json=json.dumps(body, sort_keys=True, separators=(",", ":")),
            ),
            common_pb2.ErasureReceipt, "store.receipt",
        )  # fmt: skip
        receipt.erased_at_ms, receipt.complete = r.deleted_at_ms, complete
        call.detail = {"receipt_id": body["receipt_id"], "complete": complete}
        return r, receipt

    async def _confirm_erasure(self, partition: int, template_ids: list[int]) -> list[dict]:
        """Asks every replica of the partition (each answers on its own)
        until all that answer confirm, or TANU_ERASURE_WAIT_S passes."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.config.erasure_wait_s
        req = searcher_pb2.StatsRequest(erased_template_ids=template_ids).SerializeToString()
        seen: dict[str, dict] = {}
        while True:
            replies = await bus.gather_all(self._nc, natsnames.erasure(partition), req, 0.25)
            for raw in replies:
                st = searcher_pb2.StatsResponse.FromString(raw)
                pending = set(st.pending_erasure_template_ids)
                seen[st.replica] = {
                    "replica": st.replica,
                    "index_removed": st.caught_up and not pending,
                    "snapshot_purged": not pending,
                    "applied_sequence": st.applied_sequence,
                }
            done = seen and all(v["snapshot_purged"] for v in seen.values())
            if done or loop.time() >= end:
                return [seen[k] for k in sorted(seen)]
            await asyncio.sleep(0.1)

    # --- the citizen's own controls ---------------------------------------

    async def grant_consent(
        self, req: identity_pb2.GrantConsentRequest, call: Call
    ) -> identity_pb2.ConsentResponse:
        subject_id = ids.check_subject_id(req.subject_id)
        st = await self._enrolled(subject_id)
        if not is_minor(st.date_of_birth) and not req.HasField("sample"):
            raise errors.InvalidArgument("sample is required: the subject confirms by face")
        consent = await self._consent(
            subject_id, st.date_of_birth, req.consent, call,
            req.sample if req.HasField("sample") else None,
        )  # fmt: skip
        if consent.given_by == "guardian" and consent.guardian_subject_id not in st.guardians:
            raise Denied(
                f"{consent.guardian_subject_id!r} is not a guardian on record for {subject_id!r}",
                "consent",
            )
        new = await self._call(
            natsnames.store("consent.grant"),
            store_pb2.ConsentRecordRequest(subject_id=subject_id, consent=consent),
            store_pb2.SubjectStatus, "store.consent",
        )  # fmt: skip
        call.detail = {**(call.detail or {}), "purposes": list(consent.purposes)}
        return identity_pb2.ConsentResponse(subject_id=subject_id, purposes=new.purposes)

    async def _self_or_guardian(
        self,
        subject_id: str,
        revoker: str,
        sample: common_pb2.BiometricSample,
        st: store_pb2.SubjectStatus,
    ) -> str:
        """Establishes who acts on a subject's data: the subject, or a
        guardian on record while the subject is a minor; verified by face."""
        if not sample.WhichOneof("data"):
            raise errors.InvalidArgument("a face sample is required to confirm who is asking")
        if not revoker or revoker == subject_id:
            await self._verify_person(subject_id, sample, "the subject")
            return "self"
        revoker = ids.check_subject_id(revoker)
        if revoker not in st.guardians:
            raise Denied(f"{revoker!r} is not a guardian on record for {subject_id!r}", "consent")
        if not is_minor(st.date_of_birth):
            raise Denied(
                f"subject {subject_id!r} is now an adult: only they can act on their data",
                "consent",
            )
        await self._verify_person(revoker, sample, "the guardian")
        return f"guardian:{revoker}"

    async def revoke_consent(
        self, req: identity_pb2.RevokeConsentRequest, call: Call
    ) -> identity_pb2.ConsentResponse:
        subject_id = ids.check_subject_id(req.subject_id)
        st = await self._enrolled(subject_id)
        who = await self._self_or_guardian(
            subject_id, req.revoker_subject_id, req.revoker_sample, st
        )
        new = await self._call(
            natsnames.store("consent.revoke"),
            store_pb2.ConsentRecordRequest(
                subject_id=subject_id,
                consent=common_pb2.Consent(purposes=list(req.purposes), revoked_by=who),
            ),
            store_pb2.SubjectStatus, "store.consent",
        )  # fmt: skip
        call.detail = {"revoked": list(req.purposes) or "all", "by": who.split(":")[0]}
        reply = identity_pb2.ConsentResponse(subject_id=subject_id, purposes=new.purposes)
        if not new.purposes:  # nothing left to hold the data for: erase it
            _, receipt = await self.erase(subject_id, f"consent_revoked by {who}", call)
            reply.erased = True
            reply.receipt.CopyFrom(receipt)
        return reply

    async def set_biometric_lock(
        self, req: identity_pb2.SetBiometricLockRequest, call: Call
    ) -> identity_pb2.SetBiometricLockResponse:
        subject_id = ids.check_subject_id(req.subject_id)
        if not req.sample.WhichOneof("data"):
            raise errors.InvalidArgument("sample is required: the subject confirms by face")
        await self._verify_person(subject_id, req.sample, "the subject")
        st = await self._call(
            natsnames.store("lock"), store_pb2.LockRequest(subject_id=subject_id, locked=req.locked),
            store_pb2.SubjectStatus, "store.lock",
        )  # fmt: skip
        call.detail = {"locked": st.biometric_locked}
        return identity_pb2.SetBiometricLockResponse(
            subject_id=subject_id, locked=st.biometric_locked
        )

    async def report(self, req: identity_pb2.GetSubjectRequest) -> common_pb2.SubjectReport:
        return await self._call(
            natsnames.store("report"),
            store_pb2.GetSubjectRecordRequest(subject_id=ids.check_subject_id(req.subject_id)),
            common_pb2.SubjectReport, "store.report",
        )  # fmt: skip

    async def history(self, req: common_pb2.AccessHistoryRequest) -> common_pb2.AccessHistory:
        ids.check_subject_id(req.subject_id)
        return await self._call(
            natsnames.store("history"), req, common_pb2.AccessHistory, "store.history"
        )

    async def get_subject(self, req: identity_pb2.GetSubjectRequest) -> common_pb2.Subject:
        return await self._call(
            natsnames.store("get"),
            store_pb2.GetSubjectRecordRequest(subject_id=ids.check_subject_id(req.subject_id)),
            common_pb2.Subject,
            "store.get",
        )


class IdentityServicer(identity_pb2_grpc.IdentityServicer):
    """Every RPC passes the guard: token, scope, purpose, rate limit, audit."""

    def __init__(self, gw: Gateway, guard: Guard) -> None:
        self._gw = gw
        self._guard = guard

    async def _run(self, op: str, request, context, fn):
        md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        return await self._guard.handle(op, md, getattr(request, "subject_id", ""), fn)

    async def Enroll(self, request, context):
        deadline = context.time_remaining()
        return await self._run("Enroll", request, context,
                               lambda call: self._gw.enroll(request, deadline, call))  # fmt: skip

    async def Verify(self, request, context):
        return await self._run("Verify", request, context,
                               lambda call: self._gw.verify(request, call))  # fmt: skip

    async def Identify(self, request, context):
        return await self._run("Identify", request, context,
                               lambda call: self._gw.identify(request, call))  # fmt: skip

    async def Delete(self, request, context):
        return await self._run("Delete", request, context,
                               lambda call: self._gw.delete(request, call))  # fmt: skip

    async def GetSubject(self, request, context):
        return await self._run("GetSubject", request, context,
                               lambda call: self._gw.get_subject(request))  # fmt: skip

    async def GetSubjectReport(self, request, context):
        return await self._run("GetSubjectReport", request, context,
                               lambda call: self._gw.report(request))  # fmt: skip

    async def GetAccessHistory(self, request, context):
        return await self._run("GetAccessHistory", request, context,
                               lambda call: self._gw.history(request))  # fmt: skip

    async def GrantConsent(self, request, context):
        return await self._run("GrantConsent", request, context,
                               lambda call: self._gw.grant_consent(request, call))  # fmt: skip

    async def RevokeConsent(self, request, context):
        return await self._run("RevokeConsent", request, context,
                               lambda call: self._gw.revoke_consent(request, call))  # fmt: skip

    async def SetBiometricLock(self, request, context):
        return await self._run("SetBiometricLock", request, context,
                               lambda call: self._gw.set_biometric_lock(request, call))  # fmt: skip


class GatewayService(ServiceBase):
    """A running gateway: NATS connection and the Identity gRPC server."""

    name = "gateway"

    def __init__(self, config: GatewayConfig, metrics: Metrics | None = None) -> None:
        super().__init__(config.common, metrics)
        self.config = config
        self.gateway: Gateway | None = None
        self.guard: Guard | None = None
        self.rest = None
        self._refresh: asyncio.Task[None] | None = None

    async def start(self) -> GatewayService:
        nc = await self.connect("tanu-gateway")
        await clusterconfig.ensure_layout(nc.jetstream(), self.config.common.layout, "gateway")
        self.guard = Guard(self.config, nc, self.metrics)
        self.gateway = Gateway(self.config, nc, self.metrics)
        await self.gateway.refresh_thresholds()
        self._refresh = asyncio.create_task(self._refresh_loop(), name="thresholds")
        await self.serve_grpc(
            identity_pb2_grpc.add_IdentityServicer_to_server,
            IdentityServicer(self.gateway, self.guard),
            "tanu.v1.Identity",
        )
        if self.config.rest_port >= 0:
            from .rest import RestFacade

            self.rest = RestFacade(self.gateway, self.guard, self.metrics,
                                   self.config.common.max_message_bytes)  # fmt: skip
            await self.rest.start(self.config.common.grpc_host, self.config.rest_port)
        return self

    async def _refresh_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.threshold_refresh_s)
            try:
                await self.gateway.refresh_thresholds()
            except Exception as exc:  # noqa: BLE001 - keep the last known thresholds
                log.warning("thresholds_refresh_failed", error=str(exc))
            await self._check_once()

    async def _check_once(self) -> None:
        try:
            ok = await self.gateway.check_layout()
            await self.grpc.set_serving(ok)
        except Exception as exc:  # noqa: BLE001 - keep the last verdict
            log.warning("layout_check_failed", error=str(exc))

    async def release(self) -> None:
        if self.rest:
            await self.rest.stop()
        if self._refresh:
            self._refresh.cancel()
        if self.gateway:
            await self.gateway.close()
        if self.guard:
            await self.guard.close()
