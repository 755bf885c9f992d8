"""Connecting to NATS: a service's credentials and TLS from its settings
(``NatsAuth``), one connection attempt (``connect``), and ``Link``, a
connection that outlives its client.

nats-py reconnects by itself when the server goes away, but closes its client
for good on some server errors (a message over the server's payload limit,
an authorization error while reconnecting): every later call would fail
while the service looks alive. ``Link`` then makes a fresh client (bounded
back-off), subscribes again every callback subscription made through it, and
reports the state to ``on_state`` so that health follows it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NATS

from tanu.core import errors, logs, natsroles

log = logs.get(__name__)

StateCallback = Callable[[bool], Awaitable[None]]
RENEW_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Waits between attempts at a fresh connection; the last repeats."""


@dataclass(frozen=True)
class NatsAuth:
    """Who a client is on NATS and how it reaches the server."""

    user: str = ""
    password: str = ""
    tls: ssl.SSLContext | None = None

    @property
    def inbox_prefix(self) -> str:
        return natsroles.inbox(self.user) if self.user else "_INBOX"


def _read(path: str | Path, what: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise errors.FailedPrecondition(f"cannot read {what}: {exc}") from None


def tls_context(ca_file: str = "", cert_file: str = "", key_file: str = "") -> ssl.SSLContext:
    """A client TLS context: the server checked against ``ca_file`` (system
    roots when empty), with a client certificate when both files are given."""
    if bool(cert_file) != bool(key_file):
        raise errors.FailedPrecondition("a NATS client certificate needs its file and key file")
    try:
        ctx = ssl.create_default_context(cafile=ca_file or None)
        if cert_file:
            ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise errors.FailedPrecondition(f"cannot load the NATS TLS files: {exc}") from None
    return ctx


def auth_for(common, role: str) -> NatsAuth:
    """The credentials of a service acting as ``role``: TANU_NATS_USER and
    TANU_NATS_PASSWORD(_FILE) when set, else the role's file under
    TANU_NATS_CREDENTIALS_DIR; none (anonymous) when neither is set."""
    user = common.nats_user or role
    if common.nats_password:
        password = common.nats_password
    elif common.nats_password_file:
        password = _read(common.nats_password_file, "TANU_NATS_PASSWORD_FILE")
    elif common.nats_credentials_dir:
        path = natsroles.password_file(common.nats_credentials_dir, user)
        password = _read(path, f"the NATS credentials of role {user!r}")
    else:
        user, password = "", ""
    tls = None
    if common.nats_tls_ca_file or common.nats_tls_cert_file:
        tls = tls_context(
            common.nats_tls_ca_file, common.nats_tls_cert_file, common.nats_tls_key_file
        )
    return NatsAuth(user, password, tls)


def redact(url: str) -> str:
    """``url`` without any password in it, for messages and logs."""
    out = []
    for u in url.split(","):
        parts = urlsplit(u.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        out.append(f"{parts.scheme}://{user}{host}{port}" if parts.scheme else u.strip())
    return ",".join(out)


async def connect(
    url: str,
    name: str,
    on_state: StateCallback | None = None,
    auth: NatsAuth | None = None,
    on_closed: Callable[[], Awaitable[None]] | None = None,
) -> NATS:
    """One client with unlimited reconnects; disconnects and reconnects are
    logged and reported to ``on_state``; ``on_closed`` runs when nats-py
    closes the client for good. Credentials come from ``auth`` or the URL."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    if auth is None:
        user = urlsplit(servers[0]).username if servers else None
        auth = NatsAuth(user or "")

    refused = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc)[:200])
        # Wrong credentials or an untrusted server certificate: retrying
        # cannot help, so the first connection fails at once.
        bad = isinstance(exc, ssl.SSLError) or "authorization" in str(exc).lower()
        if bad and not refused.done():
            refused.set_result(exc)

    client: list = []  # the client once connected

    async def on_disconnect() -> None:
        # A close asked for (a service stopping, a CLI done) is no warning;
        # nats-py marks the client closed before it calls back.
        if client and client[0].is_closed:
            log.debug("nats_closed")
        else:
            log.warning("nats_disconnected")
        if on_state:
            await on_state(False)

    async def on_reconnect() -> None:
        log.info("nats_reconnected")
        if on_state:
            await on_state(True)

    async def closed() -> None:
        if on_closed:
            await on_closed()

    opts: dict = {}
    if auth.password:
        opts.update(user=auth.user, password=auth.password)
    if auth.tls is not None:
        opts["tls"] = auth.tls
    attempt = asyncio.ensure_future(
        nats.connect(
            servers=servers, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
            connect_timeout=5, drain_timeout=5, allow_reconnect=True, error_cb=on_error,
            disconnected_cb=on_disconnect, reconnected_cb=on_reconnect, closed_cb=closed,
            inbox_prefix=auth.inbox_prefix, **opts,
        )
    )  # fmt: skip
    # With unlimited reconnects nats-py would retry a first connection
    # forever; a service given a wrong URL or credentials must fail, not hang.
    await asyncio.wait({attempt, refused}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if attempt.done() and attempt.exception() is None:
        client.append(attempt.result())
        return client[0]
    attempt.cancel()
    if refused.done():
        why = refused.result()
        if isinstance(why, ssl.SSLError):
            raise errors.Unavailable(f"NATS at {redact(url)}: TLS failed ({why})")
        raise errors.Unavailable(f"NATS at {redact(url)} refused the credentials (authorization)")
    exc = attempt.exception() if attempt.done() and not attempt.cancelled() else None
    raise errors.Unavailable(
        f"cannot connect to NATS at {redact(url)}: {exc or 'no connection within 15s'}"
    )


class _Subscription:
    """A callback subscription made through a ``Link``: made again on each
    fresh client until it is unsubscribed."""

    def __init__(self, link: Link, subject: str, queue: str, cb, sub) -> None:
        self._link, self.subject, self.queue, self.cb, self.sub = link, subject, queue, cb, sub

    async def unsubscribe(self, limit: int = 0) -> None:
        self._link._subs.discard(self)
        await self.sub.unsubscribe(limit)


class Link:
    """A NATS connection that survives its client being closed for good:
    it forwards to the current client, replaces a closed one with a fresh
    one (``RENEW_BACKOFF_S``), and subscribes again every callback
    subscription made through it. Request/reply, publishing and JetStream
    contexts made after the renewal (``link.jetstream()``) use the fresh
    client; one held from before does not."""

    def __init__(self, url: str, name: str, auth: NatsAuth, on_state: StateCallback | None,
                 renew: bool = True, on_lost: Callable[[], None] | None = None) -> None:  # fmt: skip
        self._url, self._name, self._auth = url, name, auth
        self._on_state, self._renew_enabled, self._on_lost = on_state, renew, on_lost
        self._nc: NATS | None = None
        self._subs: set[_Subscription] = set()
        self._closing = False
        self._renewal: asyncio.Task[None] | None = None
        self.renewals = 0
        """How many fresh clients replaced closed ones."""

    async def open(self) -> Link:
        self._nc = await self._client()
        return self

    async def _client(self) -> NATS:
        return await connect(self._url, self._name, self._on_state, self._auth, self._closed)

    def __getattr__(self, name: str):
        return getattr(self._nc, name)

    async def subscribe(self, subject: str, queue: str = "", cb=None, **kw):
        sub = await self._nc.subscribe(subject, queue=queue, cb=cb, **kw)
        if cb is None:
            return sub
        handle = _Subscription(self, subject, queue, cb, sub)
        self._subs.add(handle)
        return handle

    async def _closed(self) -> None:
        if self._closing:
            return
        log.warning("nats_closed", renew=self._renew_enabled)
        if self._on_state:
            await self._on_state(False)
        if not self._renew_enabled:
            if self._on_lost:
                self._on_lost()
            return
        if self._renewal is None or self._renewal.done():
            self._renewal = asyncio.create_task(self._renew(), name="nats-renew")

    async def _renew(self) -> None:
        attempt = 0
        while not self._closing:
            await asyncio.sleep(RENEW_BACKOFF_S[min(attempt, len(RENEW_BACKOFF_S) - 1)])
            attempt += 1
            try:
                nc = await self._client()
                for handle in list(self._subs):
                    handle.sub = await nc.subscribe(handle.subject, queue=handle.queue,
                                                    cb=handle.cb)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - try again after the next wait
                log.warning("nats_renew_failed", attempt=attempt, error=str(exc)[:200])
                continue
            self._nc = nc
            self.renewals += 1
            log.info("nats_renewed", attempt=attempt)
            if self._on_state:
                await self._on_state(True)
            return

    @property
    def client(self) -> NATS:
        """The current nats-py client."""
        assert self._nc is not None, "link not opened"
        return self._nc

    async def drain(self) -> None:
        self._closing = True
        if self._renewal:
            self._renewal.cancel()
        if self._nc and not self._nc.is_closed:
            await self._nc.drain()

    async def close(self) -> None:
        self._closing = True
        if self._renewal:
            self._renewal.cancel()
        if self._nc and not self._nc.is_closed:
            await self._nc.close()
