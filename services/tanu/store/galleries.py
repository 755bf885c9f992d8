"""Galleries, as a caller may see them: every gallery with its counts, and
a gallery's members a page at a time, over the subjects the caller may see
(``GalleryQuery.owner``, set by the gateway from the caller: a tenant sees
the subjects it owns, the operator every one, ``every_owner``). ``ALL`` is
every encounter; a named gallery is ``template_galleries``. A named gallery
the caller sees no member of is NotFound, whether it exists for others or
not; ``ALL`` always exists (perhaps empty).
"""

from __future__ import annotations

from tanu.core import errors
from tanu.v1 import encounters_pb2, store_pb2

from . import encounter_rules as rules
from .schema import Database

DEFAULT_PAGE, MAX_PAGE = 100, 1000
MAX_GALLERIES_LISTED = 1000


class Galleries(Database):
    """Reads ``templates``, ``template_galleries`` and ``subjects.owner``."""

    @staticmethod
    def _visible(q: store_pb2.GalleryQuery) -> tuple[str, list]:
        if q.every_owner:
            return "1 = 1", []
        return "s.owner = ?", [q.owner]

    def list_galleries(self, q: store_pb2.GalleryQuery) -> encounters_pb2.ListGalleriesResponse:
        """``ALL`` first, then every named gallery with a visible member, by name."""
        where, args = self._visible(q)
        counts = ("COUNT(*), COALESCE(SUM(CASE WHEN t.inactive = 0 THEN 1 ELSE 0 END), 0), "
                  "COUNT(DISTINCT t.subject_id)")  # fmt: skip
        n, active, subjects = self._one(
            f"SELECT {counts} FROM templates t JOIN subjects s ON s.subject_id = t.subject_id "
            f"WHERE {where}",
            args,
        )
        out = encounters_pb2.ListGalleriesResponse(galleries=[encounters_pb2.Gallery(
            name=rules.ALL, encounters=n, active_encounters=active, subjects=subjects)])  # fmt: skip
        for name, n, active, subjects in self._all(
            f"SELECT g.gallery, {counts} FROM template_galleries g "
            "JOIN templates t ON t.template_id = g.template_id "
            f"JOIN subjects s ON s.subject_id = t.subject_id WHERE {where} "
            "GROUP BY g.gallery ORDER BY g.gallery LIMIT ?",
            [*args, MAX_GALLERIES_LISTED],
        ):
            out.galleries.add(name=name, encounters=n, active_encounters=active, subjects=subjects)
        return out

    def gallery_content(
        self, q: store_pb2.GalleryQuery
    ) -> encounters_pb2.GetGalleryContentResponse:
        """A page of a gallery's visible members, by template id."""
        name = q.gallery or rules.ALL
        if name != rules.ALL:
            rules.check_gallery(name)
        size = q.page_size or DEFAULT_PAGE
        if not 1 <= size <= MAX_PAGE:
            raise errors.InvalidArgument(f"page_size must be 1..{MAX_PAGE}, got {q.page_size}")
        token = q.page_token
        if token and not (token.isascii() and token.isdigit() and len(token) <= 18):
            raise errors.InvalidArgument("page_token is not one this service issued")
        after = int(token or 0)
        where, args = self._visible(q)
        join = "FROM templates t JOIN subjects s ON s.subject_id = t.subject_id "
        if name != rules.ALL:
            join = ("FROM template_galleries g JOIN templates t ON t.template_id = g.template_id "
                    "JOIN subjects s ON s.subject_id = t.subject_id ")  # fmt: skip
            where += " AND g.gallery = ?"
            args = [*args, name]
        rows = self._all(
            f"SELECT t.template_id, t.subject_id, t.encounter_id, t.inactive {join}"
            f"WHERE {where} AND t.template_id > ? ORDER BY t.template_id LIMIT ?",
            [*args, after, size + 1],
        )
        if not rows and not after and name != rules.ALL:
            raise errors.NotFound(f"no gallery {name!r} is available to this tenant")
        page = rows[:size]
        return encounters_pb2.GetGalleryContentResponse(
            gallery=name,
            members=[
                encounters_pb2.GalleryMember(
                    subject_id=sid,
                    encounter_id=eid,
                    status=rules.INACTIVE if inactive else rules.ACTIVE,
                )
                for _tid, sid, eid, inactive in page
            ],  # fmt: skip
            next_page_token=str(page[-1][0]) if len(rows) > size else "",
        )
