"""The models are set up from registry packages, verified by checksum, and
configured (not coded): another recogniser is a change of environment."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from photos import originals

from tanu.core import config as cfg
from tanu.core import errors, vectors
from tanu.face import align, models
from tanu.face.embedding import Embedder
from tanu.face.mtcnn import MTCNN

from helpers import ROOT

MODEL_DIR = ROOT / "var" / "models"


@pytest.fixture(scope="module")
def prepared():
    return models.prepare(MODEL_DIR, say=lambda m: None)


def test_prepare_is_idempotent_and_keeps_a_valid_cache(prepared):
    before = prepared["dlib"].stat().st_mtime_ns
    again = models.prepare(MODEL_DIR, say=lambda m: None)
    assert again["dlib"].stat().st_mtime_ns == before
    assert models.sha256(again["dlib"]) == models.DLIB_ONNX_SHA256


def test_a_modified_model_is_refused(prepared, tmp_path):
    bad = tmp_path / models.DLIB_ONNX
    shutil.copy(prepared["dlib"], bad)
    with open(bad, "r+b") as f:
        f.seek(5000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(models.ModelError, match="refusing a modified model"):
        Embedder(cfg.from_env(cfg.EmbedderConfig, {"TANU_MODEL_DIR": str(tmp_path)}))
    # prepare replaces a corrupted cache with a fresh, verified conversion
    models.prepare(tmp_path, say=lambda m: None)
    assert models.sha256(bad) == models.DLIB_ONNX_SHA256


def test_a_differently_shaped_model_is_configuration_not_code(prepared):
    """An ArcFace-style profile (ArcFace 5-point template, (x-127.5)/127.5,
    cosine, its own model id) set purely through the environment. No ArcFace
    file ships in a registry package, so the dlib network stands in for the
    file; its graph takes 150 px chips, and the template scales to the size."""
    env = {
        "TANU_MODEL_DIR": str(MODEL_DIR),
        "TANU_EMBED_MODEL_ID": "arcface-style-test",
        "TANU_EMBED_MODEL_FILE": str(prepared["dlib"]),
        "TANU_EMBED_INPUT_SIZE": "150",
        "TANU_EMBED_TEMPLATE": "arcface-112",
        "TANU_EMBED_MEAN": "127.5,127.5,127.5",
        "TANU_EMBED_STD": "127.5",
        "TANU_EMBED_METRIC": "cosine",
    }
    emb = Embedder(cfg.from_env(cfg.EmbedderConfig, env))
    face = originals()["astronaut"]
    det = MTCNN(models.mtcnn_dir()).detect([face])[0]
    chip = emb.chip(face, det.landmarks[0])
    assert chip.shape == (150, 150, 3)
    dlib_chip = Embedder(cfg.from_env(cfg.EmbedderConfig, {"TANU_MODEL_DIR": str(MODEL_DIR)})).chip(
        face, det.landmarks[0]
    )
    assert not np.array_equal(chip, dlib_chip), "the template is configuration: another chip"
    out = emb.run(chip[None])
    assert out.shape == (1, 128) and abs(float(np.linalg.norm(out)) - 1) < 1e-5
    # Its templates live in another space: the default gallery refuses them.
    with pytest.raises(errors.InvalidArgument, match="arcface-style-test.*cannot be compared"):
        vectors.parse_template(vectors.to_bytes(out), "arcface-style-test", cfg.Layout())


def test_a_wrong_output_dimension_is_caught_at_start(prepared):
    with pytest.raises(models.ModelError, match="TANU_EMBED_DIM=512"):
        Embedder(
            cfg.from_env(
                cfg.EmbedderConfig, {"TANU_MODEL_DIR": str(MODEL_DIR), "TANU_EMBED_DIM": "512"}
            )
        )


def test_alignment_puts_the_landmarks_on_the_template():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)
    tpl = align.template("dlib-150", 150)
    theta = 0.2
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    landmarks = tpl @ rot.T * 1.7 + [60, 80]
    m = align.similarity(landmarks, tpl)
    assert np.allclose(landmarks @ m[:, :2].T + m[:, 2], tpl, atol=1e-9)
    chip = align.warp(image, m, 150)
    assert chip.shape == (150, 150, 3)
    # Geometry, not just shape: bright dots drawn at the landmarks must land
    # on the template's points in the chip.
    dots = np.zeros((400, 400, 3), np.uint8)
    for x, y in landmarks:
        dots[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3] = 255
    warped = align.warp(dots, m, 150)[:, :, 0].astype(float)
    for tx, ty in tpl:
        x0, y0 = int(round(tx)), int(round(ty))
        patch = warped[y0 - 4 : y0 + 5, x0 - 4 : x0 + 5]
        ys, xs = np.nonzero(patch > 60)
        assert len(xs), (tx, ty)
        assert abs(xs.mean() - 4 - (tx - x0)) < 1.5 and abs(ys.mean() - 4 - (ty - y0)) < 1.5
    with pytest.raises(ValueError, match="unknown alignment template"):
        align.template("nope", 10)
