"""Where the blocks meet the store: one transaction per save, load, delete or apply.

The SQL lives in ``plait._store.blocks``; this module only opens its units of work, lazily,
so that importing ``plait.blocks`` (every plugin module does) does not import SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from plait._store.blocks import BlocksTransaction

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _read(action: str, work: Callable[[BlocksTransaction], T]) -> T:
    """``work(tx)`` in one read transaction that sees one consistent snapshot."""
    from plait._store.blocks import transact

    return transact(work, action=action, write=False)


def _run_write(action: str, work: Callable[[BlocksTransaction], T]) -> T:
    """``work(tx)`` in one write transaction, run again if it lost a race to another writer."""
    from plait._store.blocks import transact

    return transact(work, action=action, write=True)
