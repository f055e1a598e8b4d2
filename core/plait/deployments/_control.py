"""The control plane: deployments, work pools, workers' claims and run control, local or remote.

``control_plane()`` answers the one this process uses: ``RemoteControl``
(``plait.deployments._remote_control``: the plait server ``PLAIT_API_URL`` names, through
``plait._api``) when that setting is set, else ``LocalControl`` over the configured store
(``plait._store``). Both have the same methods,
take the same arguments and answer the same shapes, so ``plait deploy``, ``run_deployment``,
workers and ``serve`` work the same either way:

- rows are plain dicts; times in them are timezone-aware UTC datetimes (the remote one turns
  the API's ISO 8601 text back into datetimes), except in ``get_flow_run``, which answers
  the run as ``GET /flow-runs/{id}`` does (times as ISO text, state history, task runs);
- an unknown deployment, pool or run raises ``ControlNotFound`` (a ``LookupError``), a
  request the store refuses (a name taken, a run already ended, bad parameters)
  ``ControlRefused`` (a ``ValueError``), each naming the thing and the fix; a server that
  does not answer raises ``plait._api.ApiUnavailable``, the store ``DatabaseError``.

Where the two differ by design: ``plan()`` makes the scheduled runs of every deployment in
local mode (a ``serve`` process calls it each loop; it marks late runs too) and does nothing
in remote mode (the server's scheduler does it), and ``touch_deployment`` is done by every
``claim_deployment_runs`` through the API, so the remote one sends nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from plait._runs import parse_utc
from plait.exceptions import PlaitError

if TYPE_CHECKING:
    from plait._store.database import Database

__all__ = [
    "ControlPlane",
    "LocalControl",
    "ControlNotFound",
    "ControlRefused",
    "control_plane",
    "check_run_parameters",
    "revive_times",
]

T = TypeVar("T")

# Keys whose values are times, in the rows of deployments, schedules, pools, queues,
# workers and flow runs (and the "deployment" of a claimed run).
TIME_KEYS = frozenset({
    "created", "updated", "last_polled_at", "anchor", "expected_start_time", "claimed_at", "heartbeat_at",
    "start_time", "end_time", "pause_deadline",
})


class ControlNotFound(PlaitError, LookupError):
    """No such deployment, work pool, worker or flow run (the message names it)."""


class ControlRefused(PlaitError, ValueError):
    """The control plane refused the request: a name taken, a run already ended, parameters
    the flow does not take... (the message says what and what to do)."""


def check_run_parameters(deployment: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
    """Refuse parameters a run of ``deployment`` could not start with: a name its flow does
    not take, a value of the wrong type, or a required parameter that neither the
    deployment's defaults nor ``parameters`` give (by the stored ``parameter_schema``; a
    deployment without one accepts anything).

    Raises:
        ValueError: Naming each parameter at fault.
    """
    schema = deployment.get("parameter_schema")
    if not schema or not isinstance(schema, Mapping):
        return
    from plait.deployments._schema import schema_problems

    merged = {**dict(deployment.get("parameters") or {}), **dict(parameters)}
    problems = schema_problems(schema, merged, partial=False)
    if problems:
        name = f"{deployment.get('flow_name')}/{deployment.get('name')}"
        raise ValueError(f"deployment {name!r} cannot run with these parameters: " + "; ".join(problems))


def revive_times(value: T) -> T:
    """``value`` (rows as the API answers them) with the ISO 8601 text of its time fields
    (``TIME_KEYS``, at any depth) as timezone-aware UTC datetimes."""
    return cast(T, _revived(value))


def _revived(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: parse_utc(v) if k in TIME_KEYS else _revived(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revived(v) for v in value]
    return value


class ControlPlane(ABC):
    """What deployments, workers, ``serve`` and the CLI ask of the control plane.

    The methods' rows are described in the module's docstring; see ``LocalControl`` and
    ``RemoteControl`` for where they go.
    """

    # -- deployments -------------------------------------------------------------------------------
    @abstractmethod
    def save_deployment(self, spec: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """Create or update a deployment by flow name and name.

        Args:
            spec: The deployment's columns (``Deployment.to_spec()``) plus ``schedules``
                (None keeps the saved ones, ``[]`` clears them).

        Returns:
            The saved row (with ``schedules``) and ``"created"``, ``"updated"`` or ``"unchanged"``.

        Raises:
            ControlRefused: The spec is invalid (the message names the field).
        """

    @abstractmethod
    def get_deployment(self, ref: str) -> dict[str, Any] | None:
        """The deployment ``"flow_name/name"`` (or with that id), with ``schedules``; None if none."""

    @abstractmethod
    def list_deployments(self, *, flow_name: str | None = None, work_pool: str | None = None) -> list[dict[str, Any]]:
        """Every deployment (of one flow, run by one pool), by flow name then name."""

    @abstractmethod
    def set_deployment_paused(self, ref: str, paused: bool) -> dict[str, Any]:
        """Pause or resume a deployment; returns it.

        Raises:
            ControlNotFound: No such deployment.
        """

    @abstractmethod
    def delete_deployment(self, ref: str) -> bool:
        """Delete a deployment (its runs not yet started end Cancelled); False if there was none."""

    @abstractmethod
    def create_flow_run(
        self,
        deployment_ref: str,
        parameters: Mapping[str, Any] | None = None,
        expected_start_time: datetime | None = None,
        idempotency_key: str | None = None,
        parent_flow_run_id: str | None = None,
        parent_task_run_id: str | None = None,
        job_variables: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new Scheduled run of a deployment (the earlier one for an ``idempotency_key``
        used before); its row has ``"new"``: False for that earlier one.

        Args:
            deployment_ref: ``"flow_name/name"`` or the deployment's id.
            parameters: Update the deployment's default parameters.
            expected_start_time: When it may start (default: now).
            idempotency_key: The same key answers the same run, never a second one.
            parent_flow_run_id: The flow run it is a subflow of.
            parent_task_run_id: The task run standing for it there.
            job_variables: Update the pool's and deployment's job variables.

        Raises:
            ControlNotFound: No such deployment.
            ControlRefused: Parameters its flow does not take (naming them).
        """

    # -- work pools and workers --------------------------------------------------------------------
    @abstractmethod
    def create_work_pool(
        self,
        name: str,
        type: str = "process",  # noqa: A002 - the column's name
        *,
        description: str = "",
        base_job_variables: Mapping[str, Any] | None = None,
        concurrency_limit: int | None = None,
    ) -> dict[str, Any]:
        """A new work pool with a queue ``default``.

        Raises:
            ControlRefused: A pool with this name exists, or a bad value.
        """

    @abstractmethod
    def get_work_pool(self, name: str) -> dict[str, Any] | None:
        """The pool with its ``queues`` and ``workers``; None if there is none."""

    @abstractmethod
    def list_work_pools(self) -> list[dict[str, Any]]:
        """Every work pool, by name."""

    @abstractmethod
    def update_work_pool(self, name: str, **changes: Any) -> dict[str, Any]:
        """Change a pool's ``description``, ``base_job_variables`` or ``concurrency_limit``.

        Raises:
            ControlNotFound: No such pool.
        """

    @abstractmethod
    def set_work_pool_paused(self, name: str, paused: bool) -> dict[str, Any]:
        """Pause or resume a pool; returns it.

        Raises:
            ControlNotFound: No such pool.
        """

    @abstractmethod
    def delete_work_pool(self, name: str) -> bool:
        """Delete a pool with its queues and workers; False if there was none."""

    @abstractmethod
    def save_work_queue(
        self, pool_name: str, name: str, *, priority: int = 1, concurrency_limit: int | None = None,
        paused: bool = False,
    ) -> dict[str, Any]:
        """Create or change a queue of a pool (priority 1 is served first).

        Raises:
            ControlNotFound: No such pool.
        """

    @abstractmethod
    def worker_heartbeat(
        self, pool_name: str, worker_name: str, hostname: str, pid: int | None, heartbeat_interval: float
    ) -> dict[str, Any]:
        """Register or refresh a worker: ``{"worker_id", "cancelling": [flow run ids]}``.

        Raises:
            ControlNotFound: No such pool.
        """

    @abstractmethod
    def claim_runs(
        self, pool_name: str, worker_id: str, limit: int = 1, queues: Sequence[str] | None = None,
        holding: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Claim due runs of a pool for a worker: each now Pending, with its ``deployment``.
        With ``holding`` (the ids of the runs it is running), runs claimed for it earlier
        whose answer it never received come again instead of new ones."""

    @abstractmethod
    def claim_deployment_runs(
        self, deployment_id: str, runner_id: str, limit: int = 1, holding: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Claim due runs of one deployment for a ``serve`` process (marking it polled);
        ``holding`` as for ``claim_runs``."""

    @abstractmethod
    def touch_deployment(self, deployment_id: str) -> None:
        """Mark a deployment as polled now (``last_polled_at``)."""

    # -- run control --------------------------------------------------------------------------------
    @abstractmethod
    def request_cancel(self, flow_run_id: str) -> str:
        """Cancel a run: answers the state type it is in now, ``"CANCELLED"`` (it had not
        started) or ``"CANCELLING"`` (whatever runs it stops it).

        Raises:
            ControlNotFound: No such run.
            ControlRefused: It has already ended.
        """

    @abstractmethod
    def end_flow_run(
        self, flow_run_id: str, state_type: str, message: str, *, flow_name: str = "unknown",
        parameters: Mapping[str, Any] | None = None,
    ) -> bool:
        """End a run its process could not end (``state_type`` CRASHED, FAILED or
        CANCELLED), with its unfinished task runs and subflows; a run never recorded is
        created in that state. False when it had already ended (its own verdict stands)."""

    @abstractmethod
    def cancelling_among(self, flow_run_ids: Iterable[str]) -> set[str]:
        """Those of ``flow_run_ids`` that are Cancelling."""

    @abstractmethod
    def get_flow_run(self, flow_run_id: str) -> dict[str, Any] | None:
        """The run as ``GET /flow-runs/{id}`` answers it (``state_type``, ``state_name``,
        parameters, state history, task runs); None if there is none."""

    @abstractmethod
    def late_reason(self, flow_run_id: str) -> str:
        """Why a Scheduled or Late run has not started.

        Raises:
            ControlNotFound: No such run.
        """

    @abstractmethod
    def plan(self, now: datetime | None = None) -> int:
        """Make the scheduled runs the deployments' schedules call for; answers how many."""

    @abstractmethod
    def resume_flow_run(self, flow_run_id: str, input: Mapping[str, Any] | None = None) -> dict[str, Any]:  # noqa: A002
        """Resume a Paused run with the input it waits for.

        Raises:
            ControlNotFound: No such run.
            ControlRefused: It is not paused, or the input does not fit (naming the field).
        """

    @abstractmethod
    def retry_flow_run(self, flow_run_id: str) -> dict[str, Any]:
        """Schedule a Failed or Crashed run again (same id, parameters and deployment).

        Raises:
            ControlNotFound: No such run.
            ControlRefused: It is in another state.
        """


# -- the local store -----------------------------------------------------------------------------------
def _local(call: Callable[[], T]) -> T:
    """``call()`` with the store's refusals as the control plane's errors."""
    try:
        return call()
    except (KeyError, IndexError):
        raise
    except (ControlNotFound, ControlRefused):
        raise
    except LookupError as exc:
        raise ControlNotFound(str(exc)) from None
    except ValueError as exc:
        raise ControlRefused(str(exc)) from None


class LocalControl(ControlPlane):
    """The control plane over a store this process opens itself (``PLAIT_DATABASE_URL``, or
    the SQLite file under ``PLAIT_HOME``).

    Args:
        db: The store.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def __repr__(self) -> str:
        return f"LocalControl({self.db!r})"

    # -- deployments -------------------------------------------------------------------------------
    def save_deployment(self, spec: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        from plait._store.deployments import save_deployment

        row, outcome = _local(lambda: save_deployment(self.db, dict(spec)))
        return row, outcome

    def get_deployment(self, ref: str) -> dict[str, Any] | None:
        from plait._store.deployments import get_deployment

        try:
            return get_deployment(self.db, ref)
        except ValueError:
            return None  # not a name nor an id: no such deployment

    def list_deployments(self, *, flow_name: str | None = None, work_pool: str | None = None) -> list[dict[str, Any]]:
        from plait._store.deployments import list_deployments

        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page, cursor = list_deployments(self.db, flow_name=flow_name, work_pool=work_pool, limit=500,
                                            cursor=cursor)
            rows.extend(page)
            if not cursor:
                return rows

    def set_deployment_paused(self, ref: str, paused: bool) -> dict[str, Any]:
        from plait._store.deployments import set_deployment_paused

        return _local(lambda: set_deployment_paused(self.db, ref, paused))

    def delete_deployment(self, ref: str) -> bool:
        from plait._store.deployments import delete_deployment

        return _local(lambda: delete_deployment(self.db, ref))

    def _deployment(self, ref: str) -> dict[str, Any]:
        found = self.get_deployment(ref)
        if found is None:
            raise ControlNotFound(f"no deployment {ref!r}; give 'flow_name/deployment_name' or its id "
                                  "(`plait deployment ls` lists them)")
        return found

    def create_flow_run(
        self,
        deployment_ref: str,
        parameters: Mapping[str, Any] | None = None,
        expected_start_time: datetime | None = None,
        idempotency_key: str | None = None,
        parent_flow_run_id: str | None = None,
        parent_task_run_id: str | None = None,
        job_variables: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        from plait._store.scheduling import create_flow_run

        deployment = self._deployment(deployment_ref)
        given = dict(parameters or {})
        _local(lambda: check_run_parameters(deployment, given))
        start = _utc(expected_start_time) or datetime.now(UTC)
        row, created = _local(lambda: create_flow_run(
            self.db, deployment, parameters=given, expected_start_time=start, idempotency_key=idempotency_key,
            job_variables=dict(job_variables) if job_variables is not None else None,
            parent_flow_run_id=parent_flow_run_id, parent_task_run_id=parent_task_run_id,
        ))
        return {**row, "new": created}

    # -- work pools and workers --------------------------------------------------------------------
    def create_work_pool(
        self,
        name: str,
        type: str = "process",  # noqa: A002
        *,
        description: str = "",
        base_job_variables: Mapping[str, Any] | None = None,
        concurrency_limit: int | None = None,
    ) -> dict[str, Any]:
        from plait._store.work_pools import create_work_pool

        return _local(lambda: create_work_pool(
            self.db, name, type, description=description,
            base_job_variables=dict(base_job_variables) if base_job_variables is not None else None,
            concurrency_limit=concurrency_limit,
        ))

    def get_work_pool(self, name: str) -> dict[str, Any] | None:
        from plait._store.work_pools import get_work_pool

        return get_work_pool(self.db, name)

    def list_work_pools(self) -> list[dict[str, Any]]:
        from plait._store.work_pools import list_work_pools

        return list_work_pools(self.db)

    def update_work_pool(self, name: str, **changes: Any) -> dict[str, Any]:
        from plait._store.work_pools import update_work_pool

        return _local(lambda: update_work_pool(self.db, name, **changes))

    def set_work_pool_paused(self, name: str, paused: bool) -> dict[str, Any]:
        from plait._store.work_pools import set_work_pool_paused

        return _local(lambda: set_work_pool_paused(self.db, name, paused))

    def delete_work_pool(self, name: str) -> bool:
        from plait._store.work_pools import delete_work_pool

        return _local(lambda: delete_work_pool(self.db, name))

    def save_work_queue(
        self, pool_name: str, name: str, *, priority: int = 1, concurrency_limit: int | None = None,
        paused: bool = False,
    ) -> dict[str, Any]:
        from plait._store.work_pools import save_work_queue

        return _local(lambda: save_work_queue(self.db, pool_name, name, priority=priority,
                                              concurrency_limit=concurrency_limit, paused=paused))

    def worker_heartbeat(
        self, pool_name: str, worker_name: str, hostname: str, pid: int | None, heartbeat_interval: float
    ) -> dict[str, Any]:
        from plait._store.work_pools import worker_heartbeat

        return _local(lambda: worker_heartbeat(self.db, pool_name, worker_name, hostname=hostname, pid=pid,
                                               heartbeat_interval=heartbeat_interval))

    def claim_runs(
        self, pool_name: str, worker_id: str, limit: int = 1, queues: Sequence[str] | None = None,
        holding: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        from plait._store.scheduling import claim_runs

        return _local(lambda: claim_runs(self.db, pool_name, worker_id, limit=limit,
                                         queues=list(queues) if queues is not None else None,
                                         holding=list(holding) if holding is not None else None))

    def claim_deployment_runs(
        self, deployment_id: str, runner_id: str, limit: int = 1, holding: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        from plait._store.scheduling import claim_deployment_runs

        self.touch_deployment(deployment_id)
        return _local(lambda: claim_deployment_runs(self.db, deployment_id, runner_id, limit=limit, now=None,
                                                    holding=list(holding) if holding is not None else None))

    def touch_deployment(self, deployment_id: str) -> None:
        from plait._store.deployments import touch_deployment

        _local(lambda: touch_deployment(self.db, deployment_id))

    # -- run control --------------------------------------------------------------------------------
    def request_cancel(self, flow_run_id: str) -> str:
        from plait._store.scheduling import request_cancel

        self._known_run(flow_run_id)
        state = _local(lambda: request_cancel(self.db, flow_run_id))
        return str(getattr(state, "value", state))

    def end_flow_run(
        self, flow_run_id: str, state_type: str, message: str, *, flow_name: str = "unknown",
        parameters: Mapping[str, Any] | None = None,
    ) -> bool:
        from plait._store.runs import end_flow_runs
        from plait.infrastructure import settle_records
        from plait.states import StateType

        kind = _local(lambda: StateType(state_type.upper()))
        settle_records()  # what its dead process journaled, and its last log lines, go first
        info = {"flow_name": flow_name, "parameters": dict(parameters or {})}
        return flow_run_id in _local(lambda: end_flow_runs(self.db, {flow_run_id: message}, kind, subflows=True,
                                                           create={flow_run_id: info}))

    def cancelling_among(self, flow_run_ids: Iterable[str]) -> set[str]:
        from plait._store.scheduling import cancelling_among

        ids = list(flow_run_ids)
        if not ids:
            return set()
        return set(cancelling_among(self.db, ids))

    def get_flow_run(self, flow_run_id: str) -> dict[str, Any] | None:
        from plait._store.pages import get_flow_run_full

        try:
            return get_flow_run_full(self.db, flow_run_id)
        except (LookupError, ValueError):
            return None

    def late_reason(self, flow_run_id: str) -> str:
        from plait._store.scheduling import late_reason

        self._known_run(flow_run_id)
        return str(_local(lambda: late_reason(self.db, flow_run_id)))

    def plan(self, now: datetime | None = None) -> int:
        """Make the scheduled runs every active schedule calls for (``plait.schedules.plan``,
        with the settings ``scheduler_horizon`` and ``scheduler_max_runs``), and mark runs
        not started within ``late_grace`` Late: with no server, whoever serves does both."""
        from plait._store.scheduling import mark_late
        from plait.schedules import plan
        from plait.settings import get_settings

        settings = get_settings()
        moment = _utc(now) or datetime.now(UTC)
        made = plan(self.db, now=moment, horizon=timedelta(seconds=settings.scheduler_horizon),
                    max_runs=settings.scheduler_max_runs)
        mark_late(self.db, grace_seconds=settings.late_grace, now=moment)
        return int(made)

    def resume_flow_run(self, flow_run_id: str, input: Mapping[str, Any] | None = None) -> dict[str, Any]:  # noqa: A002
        from plait._store.control import resume_flow_run

        self._known_run(flow_run_id)
        return _local(lambda: resume_flow_run(self.db, flow_run_id, dict(input) if input is not None else None))

    def retry_flow_run(self, flow_run_id: str) -> dict[str, Any]:
        from plait._store.control import retry_flow_run

        self._known_run(flow_run_id)
        return _local(lambda: retry_flow_run(self.db, flow_run_id))

    def _known_run(self, flow_run_id: str) -> None:
        from plait._store.runs import flow_run_summary

        if flow_run_summary(self.db, flow_run_id) is None:
            raise ControlNotFound(f"no flow run with id {flow_run_id!r} (`plait flow-run ls` lists them)")


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def control_plane() -> ControlPlane:
    """The control plane this process uses: ``RemoteControl`` when ``PLAIT_API_URL`` is set,
    else ``LocalControl`` over the configured store.

    Raises:
        DatabaseError: Local: the store cannot be opened.
        ApiConfigError: Remote: ``PLAIT_API_URL`` is not an http(s) URL (at the first request).
    """
    from plait.settings import get_settings

    if get_settings().api_url:
        from plait.deployments._remote_control import RemoteControl

        return RemoteControl()
    from plait._store.database import get_database

    return LocalControl(get_database())
