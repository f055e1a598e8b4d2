"""``ApiRunSink``: where the recorder's batches go when a plait server holds the history.

The recorder (``plait._recorder``) journals every record, then hands batches to a sink:
the local store, or this one, which POSTs them to ``/api/v1/records``. Each batch carries
an id; the server stores a batch id once and answers a repeat with the first answer, so a
batch whose answer was lost is simply sent again with the same id (exactly once).

A server that is down, slow or restarting raises ``ApiUnavailable``; ``unavailable(exc)``
tells the recorder to keep the records (they stay in the journal, the spool) and retry
later, never to fail the flow. A batch too large for the server (413) is split in two,
each half with an id derived from the batch's, so a retry splits the same way and the
server still recognises what it already has.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from plait._api._core import as_dict, segment
from plait._api._errors import ApiError, ApiUnavailable
from plait._api._sync import ApiSession
from plait._batch import TABLES, BatchRows
from plait.states import StateType

__all__ = ["ApiRunSink", "split_batch"]

# Statuses with which the server itself refuses a batch for what it is: sending it again
# cannot help. Anything else (no answer, 5xx, a key refused, a proxy's 404) may pass later.
_REFUSED = frozenset({400, 413, 422})
_DONE = (StateType.COMPLETED.value, StateType.CACHED.value)


def split_batch(rows: BatchRows) -> tuple[BatchRows, BatchRows]:
    """``rows`` as two batches of about half the records each, in the writer's order (so
    runs go before the states and logs that refer to them); heartbeats go with the first.

    Raises:
        ValueError: ``rows`` holds fewer than two records.
    """
    records = [(name, row) for name in TABLES for row in getattr(rows, name)]
    if len(records) < 2:
        raise ValueError("a batch of fewer than two records cannot be split")
    half = len(records) // 2
    first, second = BatchRows(now=rows.now), BatchRows(now=rows.now)
    first.heartbeats = list(rows.heartbeats)
    for index, (name, row) in enumerate(records):
        getattr(first if index < half else second, name).append(row)
    return first, second


class ApiRunSink:
    """The recorder's sink for a plait server (``plait._recorder``'s ``RunSink``).

    Args:
        session: The session to send through (``ApiSession.from_settings()``).

    Attributes:
        label: The server's URL with any password masked, for messages.
        digest: The server's identity (``api-`` + hex), written to the journal's meta.json.
    """

    # Optional flow-run columns the server's POST /records takes in a new run's row.
    flow_extras: frozenset[str] = frozenset({"entrypoint"})

    def __init__(self, session: ApiSession) -> None:
        self.session = session
        self.label = session.config.label
        self.digest = session.config.digest
        # flow runs the server said are Cancelling (POST /records answers say so)
        self._cancelling: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Any = None) -> ApiRunSink:
        """A sink for the server the settings name.

        Raises:
            ApiConfigError: PLAIT_API_URL is not set.
        """
        return cls(ApiSession.from_settings(settings))

    def __repr__(self) -> str:
        return f"ApiRunSink({self.label!r})"

    def write(self, batch_id: str, rows: BatchRows) -> tuple[set[str], int, str]:
        """Store one batch (``write_isolating`` semantics: a record the server's database
        refuses is dropped and counted, the rest stored).

        Returns:
            ``(ids of flow runs someone else ended meanwhile, records dropped, why)``.

        Raises:
            ApiUnavailable: The server did not answer; send the same ``batch_id`` again later.
            ApiError: The server refused the request (``unavailable`` says whether to retry).
        """
        try:
            answer = self.session.call(self.session.calls.post_records(batch_id, rows.to_wire()))
        except ApiError as exc:
            if exc.status == 413 and rows.size > 1:
                taken: set[str] = set()
                dropped, reasons = 0, []
                for index, half in enumerate(split_batch(rows), start=1):
                    got, lost, why = self.write(f"{batch_id}.{index}", half)
                    taken |= got
                    dropped += lost
                    if why:
                        reasons.append(why)
                return taken, dropped, "; ".join(reasons)
            raise
        taken_ids = {str(i) for i in answer.get("taken") or []}
        cancelling = answer.get("cancelling")
        if isinstance(cancelling, list):
            self._cancelling.update(str(i) for i in cancelling)
        dropped_count = answer.get("dropped") or 0
        return taken_ids, int(dropped_count) if isinstance(dropped_count, int) else 0, str(answer.get("reason") or "")

    def replay(self, batch_id: str, rows: BatchRows) -> None:
        """Store what a journal holds (``replay`` semantics: idempotent, runs ended by
        someone else are left as they are).

        Raises:
            ApiUnavailable: The server did not answer; replay the same ``batch_id`` later.
            ApiError: The server refused the request.
        """
        try:
            self.session.call(self.session.calls.replay_records(batch_id, rows.to_wire()))
        except ApiError as exc:
            if exc.status == 413 and rows.size > 1:
                for index, half in enumerate(split_batch(rows), start=1):
                    self.replay(f"{batch_id}.{index}", half)
                return
            raise

    def stored_flow_run_state(self, flow_run_id: str) -> StateType | None:
        """The state the server holds for ``flow_run_id`` (None: no such run).

        Raises:
            ApiUnavailable: The server did not answer.
            ApiError: The server refused the request.
        """
        return self.session.call(self.session.calls.flow_run_state(flow_run_id))

    def stored_flow_run(self, flow_run_id: str) -> dict[str, Any] | None:
        """What a launched process needs of the run it adopts (as
        ``plait._store.runs.stored_flow_run``), read from ``GET /flow-runs/{id}``.

        Raises:
            ApiUnavailable: The server did not answer.
            ApiError: The server refused the request.
        """
        try:
            run = self.session.call(self.session.calls.flow_run(flow_run_id))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        done = [
            {k: t.get(k) for k in ("id", "task_key", "dynamic_key", "parameters", "result_ref")}
            for t in run.get("task_runs") or []
            if t.get("state_type") in _DONE and t.get("result_ref")
        ]
        return {
            "id": run.get("id", flow_run_id), "state_type": run.get("state_type"), "name": run.get("name"),
            "tags": list(run.get("tags") or []), "run_count": int(run.get("run_count") or 0),
            "entrypoint": run.get("entrypoint"), "deployment_id": run.get("deployment_id"), "done": done,
        }

    def cancelling(self, flow_run_ids: list[str]) -> set[str]:
        """Which of these flow runs the server said are Cancelling, in its answers to the
        batches sent so far (a Running run's batch goes at least every heartbeat interval);
        no request of its own."""
        wanted = set(flow_run_ids)
        self._cancelling &= wanted  # forget runs that ended
        return set(self._cancelling)

    def pause(self, flow_run_id: str, schema: dict[str, Any] | None, deadline: datetime) -> str:
        """``PUT /records/pauses/{id}``: what the Paused run waits for; the stored state type.

        Raises:
            ApiUnavailable: The server did not answer.
            ApiError: The server refused the request.
        """
        calls = self.session.calls
        path = f"/records/pauses/{segment(flow_run_id, 'flow_run_id')}"
        body = {"input_schema": schema, "deadline": deadline.isoformat()}
        answer = self.session.call(calls.call("PUT", path, as_dict, body=body))
        return str(answer.get("state_type"))

    def pause_status(self, flow_run_id: str) -> dict[str, Any]:
        """``GET /records/pauses/{id}``: ``{state_type, state_name, resume_input}``.

        Raises:
            ApiUnavailable: The server did not answer.
            ApiError: The server refused the request (404: no such run).
        """
        calls = self.session.calls
        path = f"/records/pauses/{segment(flow_run_id, 'flow_run_id')}"
        return self.session.call(calls.call("GET", path, as_dict))

    def failure(self, exc: BaseException, action: str) -> ApiError:
        """``exc`` (raised by ``write``) as the error to report: what failed, where, and what
        to do; never the API key.

        Args:
            exc: What ``write`` raised.
            action: What was being done, e.g. ``"write run history to"``.
        """
        if isinstance(exc, ApiError):
            return exc
        text = str(exc).strip()
        cause = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return ApiError(self.session.calls.scrub(f"cannot {action} the plait server at {self.label}: {cause}"),
                        code="error")

    def unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc`` means "keep the records and try again later": the server did not
        answer, answered 5xx (or a proxy's 502/503/504, 429), refused the API key, or the
        URL reached something that is not a plait server (fix PLAIT_API_URL, then
        `plait spool flush`). False when the server refused the batch itself (400, 413,
        422): sending it again cannot succeed."""
        if isinstance(exc, ApiUnavailable):
            return True
        if isinstance(exc, ApiError):
            ours = not exc.code.startswith("http_")
            return not (exc.status in _REFUSED and ours)
        return isinstance(exc, (OSError, TimeoutError))

    def close(self) -> None:
        """Close the session's connections."""
        self.session.close()
