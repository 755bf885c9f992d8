"""Probes from requests' samples: a template as given (validated), or an
image through the face pipeline (detect, the enrolment quality bar, embed).
The image goes to the detector only; the detector returns the chosen face's
aligned chip with its detection, and that chip is what the embedder gets."""

from __future__ import annotations

import contextvars

import numpy as np

from tanu.clients.face import FaceClient
from tanu.core import errors, vectors
from tanu.core.config import GatewayConfig
from tanu.face import quality
from tanu.v1 import common_pb2, detector_pb2, embedder_pb2

# The tenant of the request being served (set by the guard once the token is
# checked): the detector and embedder admit work fairly per tenant.
tenant_var: contextvars.ContextVar[str] = contextvars.ContextVar("probe_tenant", default="")


class Samples:
    """Turns a ``BiometricSample`` into the (1, d) template to search or compare with."""

    def __init__(self, face: FaceClient, config: GatewayConfig) -> None:
        self._face = face
        self.config = config
        self.layout = config.common.layout

    async def template(
        self, sample: common_pb2.BiometricSample, *, enrol: bool = False
    ) -> np.ndarray:
        """The (1, d) template of a sample: validated as given, or made from
        the image by the face pipeline (one face, of enrolment quality, when
        ``enrol``)."""
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
            return await self._face.detect(
                detector_pb2.DetectRequest(
                    image=image,
                    tenant=tenant_var.get(),
                    # The face embedded below: the largest of those kept.
                    chips=1,
                    chip_min_score=self.config.min_face_score,
                )
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
        if not face.HasField("chip"):
            raise errors.Internal("the detector returned no chip for the face")
        emb = await self._face.embed(
            embedder_pb2.EmbedRequest(chips=[face.chip], tenant=tenant_var.get())
        )
        if len(emb.templates) != 1:
            raise errors.Internal("the embedder returned no template")
        t = emb.templates[0]
        return vectors.parse_template(t.vector, t.model_id, self.layout, field="embedded template")
