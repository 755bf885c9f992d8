"""Cluster-wide settings in the NATS KV bucket ``tanu_cluster``: calibrated
decision thresholds, stored per model id (a threshold belongs to the model
whose score space it was measured in).

Key ``thresholds.<model id>``: JSON ``{"verify": {...}, "identify": {...}}``,
each entry holding ``threshold`` and how it was obtained (target rate,
gallery size, dataset, date)."""

from __future__ import annotations

import json
import re

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from tanu.core import subjects

KINDS = ("verify", "identify")


def thresholds_key(model_id: str) -> str:
    return "thresholds." + re.sub(r"[^A-Za-z0-9_=-]", "_", model_id)


async def bucket(js: JetStreamContext):
    try:
        return await js.key_value(subjects.CLUSTER_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=subjects.CLUSTER_BUCKET, history=16,
                                         description="Tanu cluster configuration")  # fmt: skip


async def read_thresholds(js: JetStreamContext, model_id: str) -> dict:
    kv = await bucket(js)
    try:
        entry = await kv.get(thresholds_key(model_id))
    except KeyNotFoundError:
        return {}
    if not entry.value:
        return {}
    data = json.loads(entry.value)
    return {
        k: v for k, v in data.items() if k in KINDS and isinstance(v, dict) and "threshold" in v
    }


async def write_threshold(js: JetStreamContext, model_id: str, kind: str, record: dict) -> dict:
    """Stores one calibrated threshold (verify or identify) for ``model_id``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if not isinstance(record.get("threshold"), float | int):
        raise ValueError("record needs a numeric threshold")
    kv = await bucket(js)
    current = await read_thresholds(js, model_id)
    current[kind] = {**record, "model_id": model_id}
    await kv.put(thresholds_key(model_id), json.dumps(current).encode())
    return current


LAYOUT_KEY = "layout"
LAYOUT_FIELDS = ("partitions", "dimension", "metric", "model_id")


async def ensure_layout(js: JetStreamContext, layout, service: str) -> dict:
    """Checks this service's layout against the cluster's (key ``layout``);
    the first service to start records it. A service configured for another
    partition count, dimension, metric or model would search or fill the
    wrong gallery, so it must not start: FailedPrecondition names every
    difference."""
    from nats.js.errors import KeyWrongLastSequenceError

    from tanu.core import errors

    kv = await bucket(js)
    want = {k: getattr(layout, k) for k in LAYOUT_FIELDS}
    try:
        have = json.loads((await kv.get(LAYOUT_KEY)).value)
    except KeyNotFoundError:
        try:
            await kv.create(LAYOUT_KEY, json.dumps(want).encode())
            return want
        except KeyWrongLastSequenceError:  # another service recorded it first
            have = json.loads((await kv.get(LAYOUT_KEY)).value)
    diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
    if diff:
        detail = ", ".join(
            f"{k}: cluster {a!r}, {service} configured {b!r}" for k, (a, b) in diff.items()
        )
        raise errors.FailedPrecondition(
            f"cluster layout mismatch ({detail}); refusing to start against {subjects.CLUSTER_BUCKET}/{LAYOUT_KEY}"
        )
    return have
