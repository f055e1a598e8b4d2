"""Where concurrency limits are kept: ``LocalLimits`` over the store
(``plait._store.concurrency``), ``RemoteLimits`` over a plait server (``plait._api``), with
the same methods, arguments and shapes; ``limits_backend()`` picks one by the settings
(``PLAIT_API_URL`` set: the server), like ``plait.deployments.control_plane()`` does.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from plait._runs import parse_utc

if TYPE_CHECKING:
    from plait._api import ApiSession, Call
    from plait._store.database import Database

__all__ = ["Limits", "LocalLimits", "RemoteLimits", "limits_backend", "forget_active_limits", "close_sessions",
           "ACTIVE", "ActiveLimits",
           "Mode", "Row", "Rows"]

Mode = Literal["concurrency", "rate"]
Row = dict[str, Any]
Rows = list[Row]

_TIME_KEYS = frozenset({"created", "updated", "acquired_at", "level_at"})

class ActiveLimits:
    """What the engine knows of which names are active limits, per process: the names per
    store or server (``by_store``), and ``current``: (when read, names) for the store the
    settings named then, so a tagged task needs neither the settings nor I/O for two
    seconds. Changing a limit from this process forgets both."""

    def __init__(self) -> None:
        self.by_store: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}
        self.current: tuple[float, frozenset[str]] | None = None
        self.lock = threading.Lock()

    def forget(self) -> None:
        self.by_store.clear()
        self.current = None


ACTIVE = ActiveLimits()


def forget_active_limits() -> None:
    """Make the next tagged task run read the active limits again (after a change here)."""
    ACTIVE.forget()


class Limits(ABC):
    """Where the limits and their slots are kept: the local store or a plait server.

    Rows are plain dicts (times as timezone-aware UTC datetimes): a limit has ``name``,
    ``limit``, ``slot_decay_per_second``, ``active``, ``description``, ``created``,
    ``updated`` and ``used`` (slots held plus what a rate limit has not yet drained); ``get``
    adds ``slots``, each with ``id``, ``occupy``, ``flow_run_id``, ``task_run_id``,
    ``hostname``, ``pid``, ``label`` and ``acquired_at``.
    """

    @abstractmethod
    def save(
        self, name: str, limit: int, *, slot_decay_per_second: float = 0.0, active: bool = True, description: str = ""
    ) -> tuple[Row, str]:
        """Create or change a limit; answers its row and "created", "updated" or "unchanged".

        Raises:
            ValueError: A bad name or value (the message names the field).
        """

    @abstractmethod
    def get(self, name: str) -> Row | None:
        """The limit with its held ``slots`` (oldest first), or None when there is none."""

    @abstractmethod
    def list(self) -> Rows:
        """Every limit, by name."""

    @abstractmethod
    def delete(self, name: str) -> bool:
        """Delete a limit and its slots; False when there was none."""

    @abstractmethod
    def reset(self, name: str) -> int:
        """Free every slot of a limit and empty its rate bucket; answers how many were freed.

        Raises:
            LookupError: There is no such limit.
        """

    @abstractmethod
    def acquire(self, names: Sequence[str], occupy: int = 1, *, mode: Mode = "concurrency",
                holder: Mapping[str, Any]) -> Row:
        """Take ``occupy`` of each named active limit, all or nothing, without waiting.

        Answers ``{acquired, slot_ids, blocked_by, used, limits, missing, retry_after}``.

        Raises:
            ValueError: ``occupy`` can never fit a limit, or a rate is asked of a limit
                without ``slot_decay_per_second``.
        """

    @abstractmethod
    def release(self, slot_ids: Sequence[str]) -> int:
        """Give slots back (unknown ids are ignored); answers how many were freed."""

    @abstractmethod
    def active(self) -> dict[str, Row]:
        """``{name: {limit, slot_decay_per_second}}`` of the active limits."""

    def sweep(self) -> None:  # noqa: B027 - optional: only the local store has work to do
        """Mark flow runs whose process died Crashed, so the slots they held are freed (a
        server's crash detector does this itself)."""


class LocalLimits(Limits):
    """The limits in a store this process opens itself (``plait._store.concurrency``).

    Args:
        db: The store.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def __repr__(self) -> str:
        return f"LocalLimits({self.db!r})"

    def save(
        self, name: str, limit: int, *, slot_decay_per_second: float = 0.0, active: bool = True, description: str = ""
    ) -> tuple[Row, str]:
        from plait._store.concurrency import save_limit

        saved = save_limit(self.db, name, limit, slot_decay_per_second=slot_decay_per_second, active=active,
                           description=description)
        forget_active_limits()
        return saved

    def get(self, name: str) -> Row | None:
        from plait._store.concurrency import get_limit

        return get_limit(self.db, name)

    def list(self) -> Rows:
        from plait._store.concurrency import list_limits

        return list_limits(self.db)

    def delete(self, name: str) -> bool:
        from plait._store.concurrency import delete_limit

        deleted = delete_limit(self.db, name)
        forget_active_limits()
        return deleted

    def reset(self, name: str) -> int:
        from plait._store.concurrency import reset_limit

        return reset_limit(self.db, name)

    def acquire(self, names: Sequence[str], occupy: int = 1, *, mode: Mode = "concurrency",
                holder: Mapping[str, Any]) -> Row:
        from plait._store.concurrency import acquire_slots

        return acquire_slots(self.db, list(names), occupy, mode=mode, holder=holder)

    def release(self, slot_ids: Sequence[str]) -> int:
        from plait._store.concurrency import release_slots

        return release_slots(self.db, list(slot_ids))

    def active(self) -> dict[str, Row]:
        from plait._store.concurrency import active_limits

        return active_limits(self.db)

    def sweep(self) -> None:
        from plait._recovery import detect_crashed_quietly

        detect_crashed_quietly(self.db)


def _revive(value: Any) -> Any:
    """Rows as the API answers them, with their times (ISO 8601 text) as UTC datetimes."""
    if isinstance(value, dict):
        return {k: parse_utc(v) if k in _TIME_KEYS else _revive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revive(v) for v in value]
    return value


def _path_safe(name: str) -> bool:
    """Whether ``name`` survives a trip through a URL path unchanged (``plait._api`` strips
    the spaces around a path segment)."""
    return isinstance(name, str) and name == name.strip() and bool(name)


class RemoteLimits(Limits):
    """The limits on a plait server, through its API.

    Args:
        session: The session to send requests with.
    """

    def __init__(self, session: ApiSession) -> None:
        self.session = session

    def __repr__(self) -> str:
        return f"RemoteLimits({self.session.config.label!r})"

    def _send(self, call: Call[Any]) -> Any:
        """``call``'s answer; the server's refusals (400, 409, 422) as ``ValueError``."""
        from plait._api import ApiError, ApiNotFound

        try:
            return self.session.call(call)
        except ApiNotFound:
            raise
        except ApiError as exc:
            if exc.status in (400, 409, 422):
                raise ValueError(exc.message) from None
            raise

    def save(
        self, name: str, limit: int, *, slot_decay_per_second: float = 0.0, active: bool = True, description: str = ""
    ) -> tuple[Row, str]:
        if not _path_safe(name):  # the path would lose the spaces: refuse as the store does
            raise ValueError(f"a concurrency limit's name has no spaces at its start or end: {name!r}")
        answer = self._send(self.session.calls.save_concurrency_limit(
            name, limit, slot_decay_per_second=slot_decay_per_second, active=active, description=description))
        forget_active_limits()
        return _revive(dict(answer["limit"])), str(answer["outcome"])

    def get(self, name: str) -> Row | None:
        from plait._api import ApiNotFound

        if not _path_safe(name):
            return None
        try:
            row = self._send(self.session.calls.concurrency_limit(name))
        except ApiNotFound:
            return None
        return _revive(dict(row)) if row is not None else None

    def list(self) -> Rows:
        return [_revive(dict(r)) for r in self._send(self.session.calls.concurrency_limits())]

    def delete(self, name: str) -> bool:
        from plait._api import ApiNotFound

        if not _path_safe(name):
            return False
        try:
            self._send(self.session.calls.delete_concurrency_limit(name))
        except ApiNotFound:
            return False
        finally:
            forget_active_limits()
        return True

    def reset(self, name: str) -> int:
        from plait._api import ApiNotFound

        if not _path_safe(name):
            raise LookupError(f"no concurrency limit named {name!r}")
        try:
            answer = self._send(self.session.calls.reset_concurrency_limit(name))
        except ApiNotFound as exc:
            raise LookupError(exc.message) from None
        return int(answer["freed"])

    def acquire(self, names: Sequence[str], occupy: int = 1, *, mode: Mode = "concurrency",
                holder: Mapping[str, Any]) -> Row:
        return dict(self._send(self.session.calls.acquire_concurrency_slots(list(names), occupy, mode=mode,
                                                                            holder=holder)))

    def release(self, slot_ids: Sequence[str]) -> int:
        answer = self._send(self.session.calls.release_concurrency_slots(list(slot_ids)))
        return int(answer["released"])

    def active(self) -> dict[str, Row]:
        return {
            str(r["name"]): {"limit": r["limit"], "slot_decay_per_second": r.get("slot_decay_per_second", 0.0)}
            for r in self.list() if r.get("active", True)
        }


_sessions: dict[Any, ApiSession] = {}
_sessions_lock = threading.Lock()


def close_sessions() -> None:
    """Close the kept-alive connections to plait servers (a later call opens new ones)."""
    with _sessions_lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    for session in sessions:
        session.close()


def limits_backend() -> Limits:
    """The limits this process uses: a plait server's when ``PLAIT_API_URL`` is set (one
    kept-alive session per server), else the configured store's.

    Raises:
        DatabaseError: Local: the store cannot be opened.
        ApiConfigError: Remote: ``PLAIT_API_URL`` is not an http(s) URL.
    """
    from plait.settings import get_settings

    settings = get_settings()
    if settings.api_url:
        from plait._api import ApiConfig, ApiSession

        config = ApiConfig.from_settings(settings)
        with _sessions_lock:
            session = _sessions.get(config)
            if session is None:
                session = _sessions[config] = ApiSession(config)
        return RemoteLimits(session)
    from plait._store.database import get_database

    return LocalLimits(get_database())
