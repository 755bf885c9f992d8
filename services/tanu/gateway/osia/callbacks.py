"""Callback addresses of asynchronous OSIA requests: checked against the
tenant's allow-list (``auth.Tenant.callbacks``), and the result's delivery.

No server-side request forgery: a callback must be ``http(s)`` to a
scheme, host and port the tenant's entry lists; its host is resolved, and
an address that is private, loopback, link-local, multicast, reserved or
unspecified (169.254.169.254, 10/8, 127/8, ::1, fc00::/7 ...) is refused
unless the matching entry names an IP literal or ``localhost`` (the
operator of ``tanu up`` lists loopback on purpose). The same check runs
again inside the delivery's resolver, so a host re-pointed between the
request and the delivery is refused too; redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from tanu.core import auth, errors

MAX_URL = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}


def _entry_for(tenant: auth.Tenant, scheme: str, host: str, port: int):
    for entry in tenant.callbacks:
        if entry[0] == scheme and entry[1] == host and entry[2] in (0, port):
            return entry
    return None


def _is_internal(ip: str) -> bool:
    a = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped:
        a = a.ipv4_mapped
    return (a.is_private or a.is_loopback or a.is_link_local or a.is_multicast
            or a.is_reserved or a.is_unspecified)  # fmt: skip


def _may_reach_internal(entry) -> bool:
    """Whether an allow-list entry explicitly allows internal addresses:
    it names an IP literal, or localhost."""
    host = entry[1]
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def parse(url: str, tenant: auth.Tenant) -> tuple[str, str, int, tuple]:
    """(scheme, host, port, allow-list entry) of a callback URL the tenant
    may use; InvalidArgument naming what is wrong otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise errors.InvalidArgument(
            f"callback must be an http(s) URL of at most {MAX_URL} characters"
        )
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        raise errors.InvalidArgument("callback is not a valid URL") from None
    if u.scheme not in DEFAULT_PORTS or not u.hostname:
        raise errors.InvalidArgument("callback must be an absolute http:// or https:// URL")
    if u.username or u.password or u.fragment:
        raise errors.InvalidArgument("callback must carry no credentials and no fragment")
    host = u.hostname.lower()
    port = port or DEFAULT_PORTS[u.scheme]
    entry = _entry_for(tenant, u.scheme, host, port)
    if entry is None:
        raise errors.InvalidArgument(
            f"callback {u.scheme}://{host[:64]}:{port} is not in tenant "
            f'{tenant.tenant_id!r}\'s callback allow-list (tenants file: "callbacks")'
        )
    return u.scheme, host, port, entry


def check_addresses(addresses: list[str], entry, host: str) -> None:
    """Refuses when the host resolves to an internal address the entry does not allow."""
    if not addresses:
        raise errors.InvalidArgument(f"callback host {host[:64]!r} does not resolve")
    if not _may_reach_internal(entry) and any(_is_internal(a) for a in addresses):
        raise errors.InvalidArgument(
            f"callback host {host[:64]!r} resolves to a private, loopback or link-local "
            "address, which the tenant's allow-list does not name"
        )


async def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({i[4][0] for i in infos})


async def check(url: str, tenant: auth.Tenant) -> str:
    """``url`` when the tenant may be called back there (allow-list and
    resolved addresses); InvalidArgument otherwise."""
    _scheme, host, port, entry = parse(url, tenant)
    check_addresses(await _resolve(host, port), entry, host)
    return url


def with_ids(url: str, transaction_id: str, task_id: str) -> str:
    """The callback URL with the spec's ``transactionId`` and ``taskId``."""
    u = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(u.query, keep_blank_values=True)
             if k not in ("transactionId", "taskId")]  # fmt: skip
    query += [("transactionId", transaction_id), ("taskId", task_id)]
    return urlunsplit((u.scheme, u.netloc, u.path or "/", urlencode(query), ""))


class _CheckedResolver(AbstractResolver):
    """Resolves as the system does, then applies the allow-list's address rule."""

    def __init__(self, entry) -> None:
        self._entry = entry
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host, port=0, family=socket.AF_INET):
        out = await self._inner.resolve(host, port, family)
        check_addresses([r["host"] for r in out], self._entry, host)
        return out

    async def close(self) -> None:
        await self._inner.close()


async def deliver(url: str, tenant: auth.Tenant, status: int, media_type: str, body: bytes,
                  timeout_s: float) -> tuple[bool, str]:  # fmt: skip
    """POSTs a result to a callback; (delivered, what went wrong). Delivered
    means a 2xx answer; a redirect is a failure (never followed)."""
    try:
        _s, _h, _p, entry = parse(url, tenant)
    except errors.TanuError as exc:
        return False, exc.message
    connector = aiohttp.TCPConnector(resolver=_CheckedResolver(entry), force_close=True)
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as http:
            async with http.post(url, data=body, allow_redirects=False,
                                 headers={"Content-Type": media_type}) as r:  # fmt: skip
                await r.read()
                if 200 <= r.status < 300:
                    return True, ""
                return False, f"the callback answered HTTP {r.status}"
    except errors.TanuError as exc:
        return False, exc.message
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return False, f"the callback could not be reached ({type(exc).__name__})"
