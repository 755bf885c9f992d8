"""Rules about the person: dates of birth, the age of majority, and who may
act for a minor."""

from __future__ import annotations

import datetime as dt

from tanu.core import errors

# The relationships under which an enrolled adult may consent for a minor.
RELATIONSHIPS = ("parent", "legal_guardian", "legal_representative")
ADULT_AGE = 18


def parse_dob(text: str) -> dt.date:
    """A date of birth as a date; InvalidArgument when it is not one or not plausible."""
    try:
        d = dt.date.fromisoformat(text)
    except ValueError:
        raise errors.InvalidArgument(f"date_of_birth {text!r} is not a date (YYYY-MM-DD)") from None
    if d > dt.date.today() or d.year < 1880:
        raise errors.InvalidArgument(f"date_of_birth {text!r} is not plausible")
    return d


def age_on(dob: dt.date, day: dt.date) -> int:
    """Completed years of age on ``day``."""
    return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


def is_minor(dob_text: str, day: dt.date | None = None) -> bool:
    return age_on(parse_dob(dob_text), day or dt.date.today()) < ADULT_AGE
