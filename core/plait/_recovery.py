"""Finding runs whose process died: replaying their journals, then marking them Crashed.

``detect_crashed(db)`` runs before the CLI (and later the server) shows runs, so what a
user sees is never a Running run that nothing is running. First every journal of a dead
process on this host is replayed into the store (``plait._journal``: its lock is free),
so each task it completed is recorded as Completed. Then each Pending, Running or
Retrying flow run is judged:

- on this host, by its process: alive (its journal lock is held, or, for a process without
  a journal, its pid exists) means running, whatever its heartbeat says; gone means Crashed;
- on another host, by its heartbeat: silent for more than two of that run's heartbeat
  intervals (or ``PLAIT_CRASH_AFTER``, if larger) means Crashed.

A run changes state only along ``plait.states.TRANSITIONS`` (``_store.runs.end_flow_runs``).
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from plait._journal import JournalDir, decode_segments, list_journals
from plait._recorder import current_journal_dir, running_flow_run_ids
from plait._runs import HOSTNAME, utcnow
from plait._store.database import Database
from plait._store.runs import BatchRows, active_flow_runs, end_flow_runs, replay
from plait.exceptions import DatabaseError
from plait.settings import get_settings
from plait.states import StateType

__all__ = ["recover_journals", "detect_crashed", "detect_crashed_quietly"]

logger = logging.getLogger("plait.store")


def recover_journals(db: Database, home: Path | None = None) -> set[int]:
    """Replay the journals that dead processes of this host left for ``db``; remove them.

    Returns:
        The pids of the dead processes whose journals were replayed.

    Raises:
        DatabaseError: The database cannot be written (the journals stay for next time).
    """
    home = Path(home or get_settings().home)
    mine = current_journal_dir()
    replayed: set[int] = set()
    for journal in list_journals(home):
        if journal.path == mine or journal.meta().get("database") != db.url_digest:
            continue
        fd = journal.try_lock()  # held by a live process: not ours to touch
        if fd is None:
            continue
        try:
            _replay_one(db, journal)
            replayed.add(journal.pid)
        finally:
            os.close(fd)
    return replayed


def _replay_one(db: Database, journal: JournalDir) -> None:
    segments = journal.segments()
    if segments:
        decoded = decode_segments(segments)
        rows = BatchRows(
            new_flows=list(decoded["flows"].values()),
            new_tasks=list(decoded["tasks"].values()),
            states=decoded["states"],
            edges=decoded["edges"],
            logs=decoded["logs"],
            results=decoded["results"],
            artifacts=decoded["artifacts"],
            artifact_updates=decoded["artifact_updates"],
        )
        replay(db, rows)
        logger.info("replayed the journal of dead process %d (%d flow runs, %d task runs)",
                    journal.pid, len(rows.new_flows), len(rows.new_tasks))
    shutil.rmtree(journal.path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or we cannot tell: assume alive
    return True


def _process_alive(pid: int, journals: dict[int, list[JournalDir]], dead: set[int]) -> bool:
    """Whether process ``pid`` of this host still runs: its journal lock says so exactly
    (pids are reused); without a journal, whether the pid exists."""
    found = journals.get(pid)
    if found:
        return any(j.is_alive() for j in found)
    return pid not in dead and _pid_alive(pid)


def detect_crashed(
    db: Database, *, crash_after: float | None = None, by_process: bool = True, heard_since: datetime | None = None
) -> list[str]:
    """Replay dead processes' journals, then mark flow runs whose process is gone Crashed,
    with their unfinished task runs.

    Runs of this very process that its recorder knows as Running are never touched.

    Args:
        db: The database.
        crash_after: For runs of other hosts: silence, in seconds, that means crashed, if
            more than two of the run's heartbeat intervals (default: settings.crash_after).
        by_process: Judge runs of this host by their process (False: by heartbeat, like
            every other run; a server does, since its clients' processes are not its own
            and may have left their last records in a spool it has not received yet).
        heard_since: Count silence from no earlier than this (a server that just started
            heard nothing while it was down: that silence is its own, not the run's).

    Returns:
        The ids of the flow runs newly marked Crashed.

    Raises:
        DatabaseError: The database cannot be read or written.
    """
    settings = get_settings()
    dead = recover_journals(db, settings.home)
    if crash_after is None:
        crash_after = settings.crash_after
    now = utcnow()
    me = os.getpid()
    ours = running_flow_run_ids()
    journals: dict[int, list[JournalDir]] = {}
    for journal in list_journals(settings.home):
        journals.setdefault(journal.pid, []).append(journal)
    verdicts: dict[str, str] = {}
    stamp = now.isoformat(timespec="seconds")
    for row in active_flow_runs(db):
        if row.id in ours:
            continue
        where = f"process {row.pid} on host {row.hostname}"
        if by_process and row.hostname == HOSTNAME and row.pid and row.pid != me:
            if not _process_alive(row.pid, journals, dead):
                verdicts[row.id] = f"{where} is gone (detected at {stamp})"
            continue  # this host's process table is the truth, never a late heartbeat
        interval = row.heartbeat_interval or settings.heartbeat_interval
        silence = max(2 * interval, crash_after or 0.0)
        last = row.heartbeat_at or row.claimed_at or row.start_time or row.created
        if heard_since is not None and last is not None:
            last = max(last, heard_since)
        if last is not None and last < now - timedelta(seconds=silence):
            silent = int((now - last).total_seconds())
            verdicts[row.id] = (
                f"{where} has been silent for {silent}s, more than {silence:g}s (two heartbeat intervals"
                f" of {interval:g}s, or PLAIT_CRASH_AFTER; last heard {last.isoformat(timespec='seconds')}, "
                f"detected at {stamp})"
            )
    if not verdicts:
        return []
    ids = end_flow_runs(db, verdicts, StateType.CRASHED)
    if ids:
        logger.info("marked %d flow run(s) Crashed: %s", len(ids), ", ".join(ids))
    return ids


def detect_crashed_quietly(db: Database) -> None:
    """``detect_crashed``, for readers: a user who may read but not write the history can
    still list it (the problem is logged)."""
    try:
        detect_crashed(db)
    except DatabaseError as exc:
        logger.warning("could not check for crashed runs: %s", exc)
