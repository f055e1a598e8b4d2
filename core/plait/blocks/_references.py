"""Block document names and references: the naming rule, ``slug/name`` references, and the
"did you mean" suggestions that error messages offer.

A nested block saved without a name of its own gets an anonymous document named
``anonymous-<id>``; such names are reserved and never chosen by users.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from plait.exceptions import BlockError

__all__ = ["ANONYMOUS_PREFIX", "validate_name", "split_reference"]

ANONYMOUS_PREFIX = "anonymous-"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_NAME_RULE = (
    "use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit "
    "(e.g. 'prod-db' or 'warehouse.eu')"
)
_MAX_NAME = 200


def validate_name(name: Any) -> str:
    """``name`` if it is a valid block document name, else a BlockError stating the rule."""
    if not isinstance(name, str) or not name:
        raise BlockError(f"a block needs a name: {_NAME_RULE}")
    if len(name) > _MAX_NAME:
        raise BlockError(f"block name {name[:40]!r}... is too long (at most {_MAX_NAME} characters)")
    if not _NAME_RE.match(name):
        raise BlockError(f"invalid block name {name!r}: {_NAME_RULE}")
    if name.startswith(ANONYMOUS_PREFIX):
        raise BlockError(f"invalid block name {name!r}: names starting with {ANONYMOUS_PREFIX!r} are "
                         "reserved for nested blocks saved without a name")
    return name


def split_reference(reference: str) -> tuple[str | None, str]:
    """``"slug/name"`` -> ``("slug", "name")``; ``"name"`` -> ``(None, "name")``."""
    if not isinstance(reference, str) or not reference.strip():
        raise BlockError("give a block name, or 'slug/name' (e.g. 'aws-credentials/prod')")
    reference = reference.strip()
    if "/" in reference:
        slug, _, name = reference.partition("/")
        if not slug or not name:
            raise BlockError(f"{reference!r} is not a block reference; use 'slug/name' (e.g. 'aws-credentials/prod')")
        return slug, name
    return None, reference


def _label(slug: str, name: str) -> str:
    return f"{slug}/{name}"


def _is_anonymous(name: str | None) -> bool:
    return bool(name) and name.startswith(ANONYMOUS_PREFIX)  # type: ignore[union-attr]


def _suggest(word: str, candidates: Any) -> str:
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=3, cutoff=0.6)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"
