"""The cluster's internal trust: one NATS identity per service role, the
subjects each role may publish and subscribe, its credentials on disk and
the ``authorization`` block of the nats-server configuration.

Roles (``docs/security.md`` has the table):

- ``store``: answers ``tanu.store.>``, the only publisher of template
  events, manages the event stream;
- ``gateway``: calls the store's request-path operations, the searchers, the
  detector and the embedder; reads the cluster layout and thresholds;
- ``searcher-p<k>``: answers partition k's searches, erasure checks and
  stats, and reads partition k's events only (its consumers can only be
  created with partition k's filter, ``template_events(k)``: the stream
  never holds events routed under another layout once a rebalance has
  finished, ``tanu.ops.repartition.finish``);
- ``searcher-staging``: a replica building another layout during a
  rebalance, which reads every partition's events (the stream's events
  were routed under the old layout, so no narrower filter exists for it);
  deployed only for the rebalance and stopped after it
  (``docs/security.md``, "NATS roles");
- ``detector`` / ``embedder``: answer ``tanu.detect`` / ``tanu.embed``;
- ``operator``: the CLI's admin operations (key re-wrap, layout migration,
  template listing for a rebalance, digests and re-publishing for
  `tanu reconcile` and the rebalance's last step, purging the template
  events routed under an old layout, un-deduplicated bulk puts, thresholds
  and layout records).

Replies: a responder role has ``allow_responses`` (it may publish to the
reply subject of a request it received, once), and every role subscribes
only to its own inbox prefix ``_INBOX.<role>`` (``inbox_prefix``), so no
role can read another's replies. Passwords are 256-bit random, kept in
``<folder>/<role>.password`` (mode 0600); the server configuration holds
their bcrypt hashes only.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from tanu.core import files, natsnames

JS = "$JS.API"
EVENTS = natsnames.EVENTS_STREAM
KV_STREAM = f"KV_{natsnames.CLUSTER_BUCKET}"
KV_SUBJECTS = f"$KV.{natsnames.CLUSTER_BUCKET}"
LAYOUT_KEY = "layout"
STAGING = "searcher-staging"
OPERATOR = "operator"
TEST = "test"
"""A test harness identity with every permission: only tests create it."""

# The operator's admin store operations (``StoreClient`` names them); a
# gateway may call every other store operation (the request path: records,
# templates for Verify, writes, audit) and not these.
OPERATOR_STORE_OPS = (
    "keys.rewrap", "layout.migrate", "templates.list",  # rotation, rebalance
    "digest", "republish",  # tanu reconcile (and the rebalance's check)
    "deadletters.list", "deadletters.requeue",  # tanu deadletters
    "put",  # enrolment without de-duplication: bulk loads by the operator only
    "put.batch",  # the same, many subjects a transaction (tanu gallery import)
)  # fmt: skip

BCRYPT_COST = 6
"""Cost of the hashes in the server configuration. The passwords are 256-bit
random, so the hash's cost adds nothing against guessing; it only keeps the
configuration from holding a usable secret, and every connect pays it."""

_KV_READ = (f"{JS}.INFO", f"{JS}.STREAM.INFO.{KV_STREAM}", f"{JS}.DIRECT.GET.{KV_STREAM}",
            f"{JS}.DIRECT.GET.{KV_STREAM}.>", f"{JS}.STREAM.MSG.GET.{KV_STREAM}")  # fmt: skip
# Creating the bucket and the layout key when a cluster starts (ensure_layout).
_KV_LAYOUT = (f"{JS}.STREAM.CREATE.{KV_STREAM}", f"{KV_SUBJECTS}.{LAYOUT_KEY}")
_EVENTS_INFO = (f"{JS}.STREAM.INFO.{EVENTS}", f"{JS}.STREAM.CREATE.{EVENTS}")


def inbox(role: str) -> str:
    """The inbox prefix of ``role``'s connections."""
    return f"_INBOX.{role}"


MAX_REPLICAS = 16
"""Replicas a partition may have: an ordinary searcher's replica name is
one of ``replica_names()`` (``r0`` .. ``r15``), so that its role's
permissions can list its consumers by name."""


def replica_names() -> list[str]:
    return [f"r{i}" for i in range(MAX_REPLICAS)]


def _searcher(subs: list[str], filters: list[str]) -> dict:
    """The staging role: any consumer, every partition's events."""
    pub = [*_KV_READ, *_EVENTS_INFO, f"$JS.ACK.{EVENTS}.>"]
    pub += [f"{JS}.CONSUMER.CREATE.{EVENTS}.*.{f}" for f in filters]
    pub += [f"{JS}.CONSUMER.{op}.{EVENTS}.*" for op in ("INFO", "DELETE", "MSG.NEXT")]
    return {"publish": pub, "subscribe": subs, "responses": True}


def _partition_searcher(subs: list[str], partition: int) -> dict:
    """Partition k's role: its own consumers only (named by replica: NATS
    cannot restrict a consumer name by prefix, so each name is listed), each
    with partition k's filter; so it can neither create a consumer over
    another partition's events nor pull from, acknowledge or delete another
    partition's (or a staging replica's) consumer."""
    pub = [*_KV_READ, *_EVENTS_INFO]
    filt = natsnames.template_events(partition)
    for r in replica_names():
        name = natsnames.searcher_consumer(partition, r)
        pub += [f"{JS}.CONSUMER.CREATE.{EVENTS}.{name}.{filt}", f"$JS.ACK.{EVENTS}.{name}.>"]
        pub += [f"{JS}.CONSUMER.{op}.{EVENTS}.{name}" for op in ("INFO", "DELETE", "MSG.NEXT")]
    return {"publish": pub, "subscribe": subs, "responses": True}


def permissions(role: str) -> dict:
    """``{"publish": [...], "subscribe": [...], "responses": bool}`` of a role
    (and ``publish_deny``: subjects refused although ``publish`` allows them)."""
    if role == "store":
        pub = [natsnames.EVENTS_WILDCARD, *_KV_READ, *_KV_LAYOUT, *_EVENTS_INFO,
               f"{JS}.STREAM.UPDATE.{EVENTS}", f"{JS}.STREAM.MSG.DELETE.{EVENTS}"]  # fmt: skip
        return {"publish": pub, "subscribe": [f"{natsnames.STORE_PREFIX}.>"], "responses": True}
    if role == "gateway":
        pub = [f"{natsnames.STORE_PREFIX}.>", natsnames.search_all()]
        pub += [natsnames.erasure_check_all(), natsnames.DETECT, natsnames.EMBED]
        # Read-your-writes: the last sequence of each partition's events
        # (gateway.freshness asks get_last_msg; the message is an event the
        # gateway could read from the store anyway).
        pub += [f"{JS}.STREAM.MSG.GET.{EVENTS}"]
        # Each gateway's share of a tenant's rate limit: how many are up.
        pub += [natsnames.GATEWAYS_PRESENT]
        deny = [natsnames.store(op) for op in OPERATOR_STORE_OPS]
        return {"publish": [*pub, *_KV_READ, *_KV_LAYOUT], "publish_deny": deny,
                "subscribe": [natsnames.GATEWAYS_PRESENT], "responses": False}  # fmt: skip
    if role == "detector":
        return {"publish": [], "subscribe": [natsnames.DETECT], "responses": True}
    if role == "embedder":
        return {"publish": [], "subscribe": [natsnames.EMBED], "responses": True}
    if role == "operator":
        pub = [natsnames.store(op) for op in OPERATOR_STORE_OPS]
        pub += [natsnames.searcher_stats_all(), natsnames.searcher_digest_all(), *_KV_READ, f"{JS}.STREAM.CREATE.{KV_STREAM}",
                f"{KV_SUBJECTS}.>", f"{JS}.STREAM.INFO.{EVENTS}"]  # fmt: skip
        # The rebalance's last step drops the events routed under the old
        # layout once every subject's events are re-published under the new.
        pub += [f"{JS}.STREAM.PURGE.{EVENTS}"]
        return {"publish": pub, "subscribe": [], "responses": False}
    if role == STAGING:
        subs = [natsnames.search_all(), natsnames.erasure_check_all(),
                natsnames.searcher_stats_all(), natsnames.searcher_digest_all()]  # fmt: skip
        return _searcher(subs, [natsnames.ALL_TEMPLATE_EVENTS])
    if role.startswith("searcher-p") and role[len("searcher-p") :].isdigit():
        k = int(role[len("searcher-p") :])
        subs = [natsnames.search(k), natsnames.erasure_check_of(k),
                natsnames.searcher_stats_of(k), natsnames.searcher_digest_of(k)]  # fmt: skip
        # Its own partition's events only: a rebalance ends by re-publishing
        # every subject's events under the new layout and purging the old
        # ones (tanu.ops.repartition.finish), so nothing else is needed.
        return _partition_searcher(subs, k)
    if role == TEST:
        return {"publish": [">"], "subscribe": [">"], "responses": True}
    raise ValueError(f"unknown NATS role {role!r}")


def roles(partitions: int) -> list[str]:
    """Every service role of a cluster of ``partitions`` partitions."""
    searchers = [f"searcher-p{k}" for k in range(partitions)]
    return ["store", "gateway", "detector", "embedder", "operator", STAGING, *searchers]


def role_of(service: str, partition: int = 0, staging: bool = False) -> str:
    """The role a service connects as."""
    if service == "searcher":
        return STAGING if staging else f"searcher-p{partition}"
    return service


def password_file(folder: str | Path, role: str) -> Path:
    return Path(folder) / f"{role}.password"


def provision(folder: str | Path, partitions: int, test: bool = False) -> Path:
    """Creates the missing credentials of every role (and, for tests, the
    ``test`` identity) under ``folder``; returns the folder."""
    d = Path(folder)
    for role in roles(partitions) + ([TEST] if test else []):
        path = password_file(d, role)
        if not path.exists():
            files.write_private(path, secrets.token_urlsafe(32))
    return d


def read_password(folder: str | Path, role: str) -> str:
    return password_file(folder, role).read_text().strip()


def server_permissions(role: str) -> dict:
    """The nats-server ``permissions`` block of ``role``."""
    perms = permissions(role)
    p: dict = {"subscribe": {"allow": [*perms["subscribe"], f"{inbox(role)}.>"]}}
    p["publish"] = {"allow": perms["publish"]} if perms["publish"] else {"deny": [">"]}
    if perms.get("publish_deny"):
        p["publish"]["deny"] = perms["publish_deny"]
    if perms["responses"]:
        p["allow_responses"] = True
    return p


PARTITION_PLACEHOLDER = 999_999


def chart_permissions() -> dict:
    """Every service role's permissions for the Helm chart
    (``helm/tanu/files/nats-permissions.json``): ``searcher-p{k}`` stands for
    each partition's searcher, with ``{k}`` in its subjects."""
    out = {r: server_permissions(r) for r in roles(0)}
    k = str(PARTITION_PLACEHOLDER)
    out["searcher-p{k}"] = json.loads(
        json.dumps(server_permissions(f"searcher-p{k}")).replace(k, "{k}")
    )
    return out


def _user(role: str, password: str) -> dict:
    import bcrypt  # only where a server configuration is written

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
    # nats-server 2.9 recognises the "$2a$" form; "$2b$" is the same algorithm.
    return {"user": role, "password": "$2a$" + hashed[4:], "permissions": server_permissions(role)}


def server_authorization(folder: str | Path) -> str:
    """The nats-server ``authorization`` block for every role whose
    credentials are under ``folder`` (bcrypt hashes and permissions); no
    anonymous access."""
    users = [
        _user(p.name[: -len(".password")], p.read_text().strip())
        for p in sorted(Path(folder).glob("*.password"))
    ]
    if not users:
        raise ValueError(f"no NATS credentials under {folder}")
    # The configuration format accepts JSON; "$" would start a variable
    # reference in a bare value, so every value is a quoted string.
    return "authorization: " + json.dumps({"users": users}, indent=1) + "\n"
