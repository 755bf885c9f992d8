"""Rules about the person: dates of birth, the age of majority, and who may
act for a minor."""

from __future__ import annotations

import datetime as dt
import re

from tanu.core import errors

# The relationships under which an enrolled adult may consent for a minor.
RELATIONSHIPS = ("parent", "legal_guardian", "legal_representative")
ADULT_AGE = 18


# Exactly YYYY-MM-DD in ASCII digits: Python's fromisoformat also takes
# "19900101", week dates ("1990-W01-1") and ordinal dates, which would be
# stored as given and compared as text elsewhere.
_DOB = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
OLDEST_YEAR = 1880


def parse_dob(text: str) -> dt.date:
    """A date of birth (a calendar date written exactly ``YYYY-MM-DD``, not
    in the future, not before 1880) as a date; InvalidArgument otherwise."""
    shown = repr(text) if len(text) <= 32 else f"of {len(text)} characters"
    if not _DOB.fullmatch(text):
        raise errors.InvalidArgument(
            f"date_of_birth {shown} is not a calendar date written YYYY-MM-DD"
        )
    try:
        d = dt.date.fromisoformat(text)
    except ValueError:
        raise errors.InvalidArgument(f"date_of_birth {shown} is not a calendar date") from None
    if d > dt.date.today():
        raise errors.InvalidArgument(f"date_of_birth {shown} is in the future")
    if d.year < OLDEST_YEAR:
        raise errors.InvalidArgument(f"date_of_birth {shown} is before {OLDEST_YEAR}")
    return d


def age_on(dob: dt.date, day: dt.date) -> int:
    """Completed years of age on ``day``."""
    return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


def is_minor(dob_text: str, day: dt.date | None = None) -> bool:
    """Whether a person born on ``dob_text`` is under 18 (on ``day``). A
    date stored before dates were held to ``YYYY-MM-DD`` (e.g. "19900101")
    is still read, so such records keep working; new ones cannot be made."""
    try:
        dob = parse_dob(dob_text)
    except errors.InvalidArgument:
        try:
            dob = dt.date.fromisoformat(dob_text)
        except ValueError:
            raise errors.InvalidArgument(
                f"date_of_birth {dob_text[:32]!r} is not a calendar date"
            ) from None
    return age_on(dob, day or dt.date.today()) < ADULT_AGE
