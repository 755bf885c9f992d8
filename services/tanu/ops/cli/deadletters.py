"""``tanu deadletters list | requeue (--all | SEQ ...)``: the template
events the store's relay set aside because JetStream refused them for good
(``tanu.store.dead_letters``), listed, and requeued once the cause is fixed
(e.g. the stream's size limit raised). Operator only: it calls the store
over NATS with the operator's identity. A listing shows no subject id."""

from __future__ import annotations

import asyncio
import json
import time

from tanu.clients.store import StoreClient
from tanu.core import bus, errors
from tanu.v1 import store_pb2

from .client import nats_url

KINDS = {k: n.removeprefix("KIND_").lower() for n, k in store_pb2.TemplateEvent.Kind.items()}


async def _call(url: str, fn):
    nc = await bus.connect(url, "tanu-deadletters")
    try:
        return await fn(StoreClient(nc, 60.0))
    finally:
        await nc.close()


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z"


def cmd_deadletters(args) -> int:
    url = nats_url(args)
    try:
        if args.action == "list":
            reply = asyncio.run(_call(url, lambda s: s.list_dead_letters(
                store_pb2.ListDeadLettersRequest(limit=args.limit))))  # fmt: skip
            if args.json:
                print(json.dumps({"total": reply.total, "letters": [
                    {"seq": d.seq, "event_id": d.event_id, "subject": d.subject,
                     "kind": KINDS.get(d.kind, str(d.kind)), "reason": d.reason,
                     "created_at_ms": d.created_at_ms, "dead_at_ms": d.dead_at_ms}
                    for d in reply.letters]}, indent=2))  # fmt: skip
                return 0
            print(f"{reply.total} dead letter(s)"
                  + (f", the oldest {len(reply.letters)}:" if reply.letters else ""))  # fmt: skip
            for d in reply.letters:
                print(f"  {d.seq:>8}  {_when(d.dead_at_ms)}  {d.subject:<24} "
                      f"{KINDS.get(d.kind, d.kind):<10} {d.reason[:120]}")  # fmt: skip
            return 0
        if not args.all and not args.seqs:
            print("error: name the dead letters to requeue (SEQ ...) or give --all")
            return 2
        req = store_pb2.RequeueDeadLettersRequest(seqs=args.seqs, all=args.all)
        reply = asyncio.run(_call(url, lambda s: s.requeue_dead_letters(req)))
    except errors.TanuError as exc:
        print(f"error: {exc.code.name}: {exc.message}")
        return 1
    print(f"requeued {reply.requeued} dead letter(s): {reply.subjects} subject(s) published "
          f"again from the store ({reply.templates} template(s)), {reply.removals} removal(s) "
          f"queued as they were, {reply.dropped} of erased subjects dropped")  # fmt: skip
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("deadletters", help="template events the relay set aside: list, requeue")
    p.set_defaults(run=cmd_deadletters)
    p.add_argument("action", choices=["list", "requeue"])
    p.add_argument("seqs", nargs="*", type=int, metavar="SEQ",
                   help="requeue: the dead letters to requeue, by seq")  # fmt: skip
    p.add_argument("--all", action="store_true", help="requeue: every dead letter")
    p.add_argument("--limit", type=int, default=100, help="list: the oldest this many")
    p.add_argument("--json", action="store_true", help="list: as JSON")
    p.add_argument("--nats", help="NATS URL (default: the local cluster's, or TANU_NATS_URL)")
