"""The spool: run records waiting under PLAIT_HOME for a plait server that did not answer.

A process recording to a server journals every record first (``plait._journal``) and
deletes each journal segment once the server stored its batch. When the server is down at
exit (or the process is killed), the segments stay, in the journal directory whose
``meta.json`` names the server by its digest (``api-...``); once the process is gone its
lock is free. That is the spool.

``deliver_spool(sink, home)`` sends what dead processes left for the sink's server, journal
by journal and segment by segment in their order, through ``POST /api/v1/records/replay``:
each group of segments goes as one batch whose id is derived from the journal directory and
the segment names, so a delivery interrupted after the server stored a batch but before the
segments were deleted sends the same id again, and the server, which stores each batch id
once, ignores the repeat (and replay is idempotent besides): every record arrives exactly
once. ``spool_status(home)`` describes what waits. ``plait spool status|flush`` shows and
drains it; any plait process using the server delivers it too (``deliver_pending``).
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from plait._batch import BatchRows
from plait._journal import JournalDir, decode_segments, list_journals

__all__ = ["deliver_spool", "spool_status", "deliver_pending", "batch_id_for", "SpoolSink"]

logger = logging.getLogger("plait.recorder")

# Journal bytes per delivered batch: a segment is 1 MiB, so a few go together, well under
# the server's request limit (a bigger one is split by the sink on 413).
_GROUP_BYTES = 4 << 20


class SpoolSink(Protocol):
    """What delivering needs of a sink (``plait._api.sink.ApiRunSink`` is one; its
    ``unavailable(exc)``, when a sink has it, tells a server that is not answering from
    one that refuses a batch)."""

    @property
    def label(self) -> str: ...
    @property
    def digest(self) -> str: ...

    def replay(self, batch_id: str, rows: BatchRows) -> None: ...


def _retry_later(sink: SpoolSink, exc: BaseException) -> bool:
    """Whether ``exc`` means the server may take the records later (stop delivering, keep
    them all); a sink without ``unavailable`` keeps them on any error."""
    judge = getattr(sink, "unavailable", None)
    return bool(judge(exc)) if callable(judge) else True


def _is_remote(digest: Any) -> bool:
    from plait._api._core import is_api_digest

    return is_api_digest(digest)


def batch_id_for(journal: JournalDir, segments: list[Path]) -> str:
    """The stable id of the batch holding ``segments`` of ``journal``."""
    return f"spool-{journal.path.name}-{segments[0].stem}-{segments[-1].stem}"


def _groups(segments: list[Path]) -> list[list[Path]]:
    """``segments`` in order, in runs of at most ``_GROUP_BYTES`` (at least one each)."""
    groups: list[list[Path]] = []
    size = 0
    for segment in segments:
        try:
            length = segment.stat().st_size
        except OSError:
            continue
        if not groups or size + length > _GROUP_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(segment)
        size += length
    return groups


def _rows(segments: list[Path]) -> BatchRows:
    decoded = decode_segments(segments)
    return BatchRows(
        new_flows=list(decoded["flows"].values()),
        new_tasks=list(decoded["tasks"].values()),
        states=decoded["states"],
        edges=decoded["edges"],
        logs=decoded["logs"],
        results=decoded["results"],
        artifacts=decoded["artifacts"],
        artifact_updates=decoded["artifact_updates"],
    )


def _count(rows: BatchRows) -> int:
    return rows.size


def _oldest(rows: BatchRows) -> datetime | None:
    times = [r.get("created") for r in rows.new_flows] + [s.get("timestamp") for s in rows.states]
    times += [r.get("timestamp") for r in rows.logs]
    found = [t for t in times if isinstance(t, datetime)]
    return min(found) if found else None


def spool_status(home: Path) -> list[dict[str, Any]]:
    """The journals under ``home`` holding records for a plait server, oldest first.

    Each: ``{journal, pid, host, alive, destination, digest, segments, flow_runs, records,
    oldest, oldest_age_seconds}``: ``alive`` means its process still runs (and will deliver
    them itself); ``destination`` is the server's masked URL when the journal names it, else
    its digest; ``oldest`` the earliest record's time (ISO 8601, UTC).
    """
    now = datetime.now(UTC)
    rows_out = []
    for journal in list_journals(home):
        meta = journal.meta()
        digest = meta.get("database")
        if not _is_remote(digest):
            continue
        segments = journal.segments()
        rows = _rows(segments) if segments else BatchRows()
        oldest = _oldest(rows)
        if oldest is None and segments:
            try:
                oldest = datetime.fromtimestamp(min(s.stat().st_mtime for s in segments), UTC)
            except OSError:
                oldest = None
        rows_out.append({
            "journal": journal.path.name,
            "pid": journal.pid,
            "host": journal.host,
            "alive": journal.is_alive(),
            "destination": str(meta.get("destination") or meta.get("label") or digest),
            "digest": digest,
            "segments": len(segments),
            "flow_runs": len(rows.new_flows),
            "records": _count(rows),
            "oldest": oldest.isoformat() if oldest is not None else None,
            "oldest_age_seconds": round((now - oldest).total_seconds(), 1) if oldest is not None else None,
        })
    return sorted(rows_out, key=lambda r: r["oldest"] or "~")


def deliver_spool(sink: SpoolSink, home: Path, *, skip: Path | None = None) -> dict[str, Any]:
    """Deliver the records dead processes left under ``home`` for ``sink``'s server.

    Journals of live processes are left alone (their lock is held: this process's own
    journal included), and so are ``skip`` and journals for other servers or a local
    database. A journal whose records were all
    delivered is removed. When the server stops answering, delivery stops and what is left
    stays for the next try.

    Returns:
        ``{destination, journals, batches, records, remaining_journals, error}``: how many
        journals were emptied, batches and records sent, journals left waiting, and the
        error that stopped the delivery (None: everything deliverable was delivered).
    """
    from plait._journal import Journal

    result: dict[str, Any] = {
        "destination": sink.label, "journals": 0, "batches": 0, "records": 0, "remaining_journals": 0,
        "error": None,
    }
    pending = [
        j for j in list_journals(home)
        if j.path != skip and j.meta().get("database") == sink.digest
    ]
    for index, journal in enumerate(pending):
        fd = journal.try_lock()  # held: its process lives (or another flush is at it)
        if fd is None:
            result["remaining_journals"] += 1
            continue
        try:
            stopped = False
            for group in _groups(journal.segments()):
                rows = _rows(group)
                if rows.size:
                    try:
                        sink.replay(batch_id_for(journal, group), rows)
                    except Exception as exc:
                        result["error"] = str(exc) or type(exc).__name__
                        if _retry_later(sink, exc):
                            result["remaining_journals"] += len(pending) - index
                            return result
                        logger.error("the plait server at %s refused the spooled records of %s: %s; they stay in "
                                     "%s", sink.label, journal.path.name, exc, journal.path)
                        stopped = True
                        break
                    result["batches"] += 1
                    result["records"] += rows.size
                Journal.discard(group)
            if stopped or journal.segments():
                result["remaining_journals"] += 1
            else:
                shutil.rmtree(journal.path, ignore_errors=True)
                result["journals"] += 1
        finally:
            os.close(fd)
    return result


def deliver_pending(settings: Any = None) -> dict[str, Any] | None:
    """Deliver the spool to the server the settings name, never raising: for any plait
    process that uses a server (the CLI before it reads, a recorder when it starts).

    Returns:
        What ``deliver_spool`` returned, or None when no server is configured, nothing
        waits, or the delivery could not start (logged).
    """
    if settings is None:
        from plait.settings import get_settings

        settings = get_settings()
    if not settings.api_url:
        return None
    home = Path(settings.home)
    try:
        from plait._api._core import api_digest

        digest = api_digest(settings.api_url)
        if not any(j.meta().get("database") == digest and j.segments() for j in list_journals(home)):
            return None
        from plait._api.sink import ApiRunSink

        sink = ApiRunSink.from_settings(settings)
        try:
            result = deliver_spool(sink, home)
        finally:
            sink.close()
    except Exception as exc:  # delivering is a courtesy of whichever process comes next
        logger.warning("could not deliver the spooled run records: %s", exc)
        return None
    if result["records"]:
        logger.info("delivered %d spooled record(s) to %s", result["records"], result["destination"])
    if result["error"]:
        logger.warning("spooled run records stay under %s: %s", home / "journal", result["error"])
    return result

