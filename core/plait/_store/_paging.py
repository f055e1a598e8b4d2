"""What every keyset page shares: limits, opaque cursors, and cutting large fields.

A cursor is the sort key of the last row a page returned, as url-safe base64 of a small
JSON list tagged with the listing it belongs to, so a cursor of one listing is refused by
another instead of silently reading the wrong rows.

Large values are cut in SQL, so a listing never moves a huge parameter or message out of
the database: a JSON value over ``LIST_LIMIT`` bytes becomes ``{"truncated": true, "size":
<bytes>, "preview": <its first PREVIEW_CHARS characters>}``, a text over ``LIST_LIMIT``
characters is cut there and ends with ``"…[truncated N chars]"``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from sqlalchemy import LargeBinary, Text, case, cast, func
from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "MAX_LIMIT",
    "LIST_LIMIT",
    "PREVIEW_CHARS",
    "check_limit",
    "encode_cursor",
    "decode_cursor",
    "json_columns",
    "json_value",
    "text_columns",
    "text_value",
]

MAX_LIMIT = 1000
LIST_LIMIT = 2000
PREVIEW_CHARS = 500
_MAX_CURSOR = 512


def check_limit(limit: Any) -> int:
    """``limit`` when it is a whole number from 1 to ``MAX_LIMIT``.

    Raises:
        ValueError: It is not.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
    return int(limit)


def encode_cursor(listing: str, key: list[Any]) -> str:
    """The opaque cursor for the row whose sort key is ``key`` in ``listing``."""
    text = json.dumps([listing, *key], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, listing: str, types: tuple[type, ...]) -> list[Any]:
    """The sort key inside ``cursor``, checked against ``listing`` and the key's ``types``.

    Raises:
        ValueError: ``cursor`` is not a cursor this listing returned.
    """
    bad = ValueError(
        f"bad cursor {str(cursor)[:40]!r}: pass the next_cursor a page of this list returned, "
        "or none to start from the first page"
    )
    if not isinstance(cursor, str) or not cursor or len(cursor) > _MAX_CURSOR:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(value, list) or len(value) != len(types) + 1 or value[0] != listing:
        raise bad
    key = value[1:]
    for item, kind in zip(key, types, strict=True):
        if isinstance(item, bool) or not isinstance(item, kind):
            raise bad
    return key


# -- cutting large fields in SQL -----------------------------------------------------------------
def json_columns(column: Any, label: str, dialect: str) -> list[ColumnElement[Any]]:
    """Columns selecting a JSON ``column`` as ``<label>_size`` (bytes of its JSON text) and
    ``<label>_text`` (the text, or only its first ``PREVIEW_CHARS`` characters when larger
    than ``LIST_LIMIT``); read them back with ``json_value``."""
    as_text = cast(column, Text)
    # PostgreSQL's octet_length reads a stored value's size from its header, without
    # fetching the value; SQLite counts the bytes of a BLOB cast.
    size = func.octet_length(as_text) if dialect == "postgresql" else func.length(cast(as_text, LargeBinary))
    body = case((size > LIST_LIMIT, func.substr(as_text, 1, PREVIEW_CHARS)), else_=as_text)
    return [size.label(f"{label}_size"), body.label(f"{label}_text")]


def json_value(size: int | None, text: str | None) -> Any:
    """The value ``json_columns`` selected: itself, or the truncation marker."""
    if text is None:
        return None
    if size is not None and size > LIST_LIMIT:
        return {"truncated": True, "size": int(size), "preview": text}
    return json.loads(text)


def text_columns(column: Any, label: str) -> list[ColumnElement[Any]]:
    """Columns selecting a text ``column`` as ``<label>_len`` (characters) and
    ``<label>_head`` (its first ``LIST_LIMIT`` characters); read them with ``text_value``."""
    return [func.length(column).label(f"{label}_len"), func.substr(column, 1, LIST_LIMIT).label(f"{label}_head")]


def text_value(length: int | None, head: str | None) -> str | None:
    """The text ``text_columns`` selected, with a marker saying how much was cut."""
    if head is None:
        return None
    if length is not None and length > LIST_LIMIT:
        return f"{head}…[truncated {int(length) - LIST_LIMIT} chars]"
    return head
