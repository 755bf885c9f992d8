"""Galleries (the OSIA readGalleries / readGalleryContent): counted and
listed over the subjects the caller may see, which the gateway tells the
store from the caller's identity, never from the request: a tenant sees
the subjects it owns (``tanu.policy.access``: the owner relation), the
operator every subject. Nothing of another tenant's subjects is counted or
listed, and a gallery with no member the caller sees is NOT_FOUND."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tanu.v1 import encounters_pb2, identity_pb2, store_pb2

if TYPE_CHECKING:
    from .gateway import Gateway
    from .guard import Call


def _query(call: Call) -> store_pb2.GalleryQuery:
    p = call.principal
    return store_pb2.GalleryQuery(owner=p.tenant_id, every_owner=p.kind == "operator")


async def list_galleries(
    gw: Gateway, req: identity_pb2.ListGalleriesRequest, call: Call
) -> encounters_pb2.ListGalleriesResponse:
    out = await gw.store.list_galleries(_query(call))
    call.detail = {"galleries": len(out.galleries)}
    return out


async def gallery_content(
    gw: Gateway, req: identity_pb2.GetGalleryContentRequest, call: Call
) -> encounters_pb2.GetGalleryContentResponse:
    q = _query(call)
    q.gallery, q.page_size, q.page_token = req.gallery, req.page_size, req.page_token
    out = await gw.store.gallery_content(q)
    call.detail = {"gallery": out.gallery, "members": len(out.members)}
    return out
