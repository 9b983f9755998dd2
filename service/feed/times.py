"""Times as the feed's faces take and show them: ``--since``/``?since=`` input, and "3 h ago".

The store keeps ISO 8601 UTC text that sorts as text (``2026-05-09T07:35:25.123+00:00``; the X API's
``...25.000Z``). A bound is given as ``YYYY-MM-DDTHH:MM:SS.mmm`` with no zone suffix: a prefix of both forms, so
``created_at >= bound`` compares correctly whichever form a row has.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from service.errors import InputError

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*(?:ago)?\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str) -> datetime:
    """An ISO 8601 date or date-time (no zone means UTC) as an aware UTC datetime; raises ``InputError``."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"not a time: {value!r} (expected ISO 8601 such as 2026-05-09 or 2026-05-09T07:30Z, or a "
                         "duration such as 30m, 6h, 2d, 1w)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_since(value: str, *, now: datetime | None = None) -> str:
    """``--since`` as a store bound: an ISO time, or a duration back from now (``90m``, ``6h``, ``2d``, ``1w``)."""
    match = _RELATIVE.match(value)
    if match:
        amount, unit = int(match.group(1)), match.group(2).lower()
        moment = (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    else:
        moment = parse_time(value)
    return bound(moment)


def bound(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def iso(moment: datetime) -> str:
    """The store's format (``db.utc_now``) for any moment."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def relative(value: str | None, *, now: datetime | None = None) -> str:
    """A short age for people ("now", "5 min", "3 h", "2 d", or the date after a week)."""
    if not value:
        return ""
    try:
        moment = parse_time(value)
    except ValueError:
        return value
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 60:
        return "now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    if seconds < 7 * 86400:
        return f"{int(seconds // 86400)} d"
    return moment.strftime("%Y-%m-%d")
