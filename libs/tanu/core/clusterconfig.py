"""Cluster-wide settings in the NATS KV bucket ``tanu_cluster``: calibrated
decision thresholds, stored per model id (a threshold belongs to the model
whose score space it was measured in).

Key ``thresholds.<model id>``: JSON ``{"verify": {...}, "identify": {...}}``,
each entry holding ``threshold`` and how it was obtained (target rate,
gallery size, dataset, date)."""

from __future__ import annotations

import json

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from tanu.core import errors, logs, natsnames
from tanu.core.config import Layout

log = logs.get(__name__)

KINDS = ("verify", "identify")


def thresholds_key(model_id: str) -> str:
    """One key per model id: hex-encoded, so two ids never share a key."""
    return "thresholds." + model_id.encode("utf-8").hex()


async def bucket(js: JetStreamContext) -> KeyValue:
    """The cluster configuration bucket, created on first use."""
    try:
        return await js.key_value(natsnames.CLUSTER_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=natsnames.CLUSTER_BUCKET, history=16,
                                         description="Tanu cluster configuration")  # fmt: skip


async def _read(kv: KeyValue, model_id: str) -> tuple[dict, int | None]:
    """(the model's records, the key's revision or None when absent)."""
    try:
        entry = await kv.get(thresholds_key(model_id))
    except KeyNotFoundError:
        return {}, None
    try:
        data = json.loads(entry.value or b"{}")
    except ValueError:
        log.error("thresholds_unreadable", model_id=model_id)
        return {}, entry.revision
    if not isinstance(data, dict):
        return {}, entry.revision
    records = {
        k: v
        for k, v in data.items()
        if k in KINDS and isinstance(v, dict) and isinstance(v.get("threshold"), float | int)
        and v.get("model_id") == model_id
    }  # fmt: skip
    return records, entry.revision


async def read_thresholds(js: JetStreamContext, model_id: str) -> dict:
    """The calibrated thresholds recorded for exactly this model id."""
    return (await _read(await bucket(js), model_id))[0]


async def write_threshold(js: JetStreamContext, model_id: str, kind: str, record: dict) -> dict:
    """Stores one calibrated threshold (verify or identify) for ``model_id``,
    keeping the other kind's; concurrent writers retry on the revision."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if not isinstance(record.get("threshold"), float | int):
        raise ValueError("record needs a numeric threshold")
    kv = await bucket(js)
    for _ in range(10):
        current, revision = await _read(kv, model_id)
        current[kind] = {**record, "model_id": model_id}
        body = json.dumps(current).encode()
        try:
            if revision is None:
                await kv.create(thresholds_key(model_id), body)
            else:
                await kv.update(thresholds_key(model_id), body, last=revision)
            return current
        except KeyWrongLastSequenceError:
            continue  # someone else wrote in between: read again
    raise RuntimeError("could not store the threshold: the key keeps changing")


LAYOUT_KEY = "layout"


async def ensure_layout(js: JetStreamContext, layout: Layout, service: str) -> dict:
    """Checks this service's layout against the cluster's (key ``layout``);
    the first service to start records it. A service configured for another
    partition count, dimension, metric or model would search or fill the
    wrong gallery, so it must not start: FailedPrecondition names every
    difference."""
    kv = await bucket(js)
    want = layout.as_dict()
    try:
        have = json.loads((await kv.get(LAYOUT_KEY)).value)
    except KeyNotFoundError:
        try:
            await kv.create(LAYOUT_KEY, json.dumps(want).encode())
            return want
        except KeyWrongLastSequenceError:  # another service recorded it first
            have = json.loads((await kv.get(LAYOUT_KEY)).value)
    detail = layout.differences(have, "cluster", f"{service} configured")
    if detail:
        raise errors.FailedPrecondition(
            f"cluster layout mismatch ({detail}); refusing to start against {natsnames.CLUSTER_BUCKET}/{LAYOUT_KEY}"
        )
    return have


# --- re-partitioning (tanu partitions rebalance) ---------------------------
#
# Key ``layout.next``: the layout a rebalance moves to, while its staging
# searchers build. When the switch happens, ``layout`` takes its partition
# count and lists in ``routed`` every partition count the event stream's
# subjects were ever routed with: searchers then read every partition's
# events and keep their own by recomputing the partition.

NEXT_LAYOUT_KEY = "layout.next"


async def read_layout(
    js: JetStreamContext, key: str = LAYOUT_KEY
) -> tuple[dict | None, int | None]:
    """(the record, its revision), or (None, None) when absent."""
    kv = await bucket(js)
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None, None
    if not entry.value:  # deleted
        return None, entry.revision
    return json.loads(entry.value), entry.revision


def rerouted(record: dict, partitions: int) -> bool:
    """Whether the stream holds events routed under another partition count."""
    return any(int(p) != partitions for p in record.get("routed", []))


async def ensure_next_layout(js: JetStreamContext, layout: Layout, service: str) -> dict:
    """A staging searcher's check: a rebalance to exactly this layout is in
    progress (or already switched to it)."""
    for key in (NEXT_LAYOUT_KEY, LAYOUT_KEY):
        record, _ = await read_layout(js, key)
        if record and not layout.differences(record, key, f"{service} configured"):
            return record
    raise errors.FailedPrecondition(
        f"no rebalance to {layout.as_dict()} is in progress ({natsnames.CLUSTER_BUCKET}/{NEXT_LAYOUT_KEY}); "
        "start one with `tanu partitions rebalance`"
    )
