"""Saving deployments from Python and making their runs: ``deploy``, ``run_deployment``,
``backfill``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from plait.deployments._model import DeploymentError, control_plane, deployment_from_flow, refuse_secret_parameters
from plait.deployments._schema import schema_problems
from plait.exceptions import ParameterBindError, PlaitError

if TYPE_CHECKING:
    from plait.flows import Flow

__all__ = ["DeploymentNotFound", "deploy", "run_deployment", "backfill", "get_deployment", "slot_key",
           "DEFAULT_POLL_INTERVAL", "MAX_BACKFILL_RUNS"]

DEFAULT_POLL_INTERVAL = 1.0
MAX_BACKFILL_RUNS = 1000


class DeploymentNotFound(PlaitError, LookupError):
    """No deployment has that name or id."""


def slot_key(schedule_id: str, slot: datetime) -> str:
    """The idempotency key of the run of one schedule slot, the scheduler's and backfill's
    alike: a slot gets one run, whoever creates it first."""
    moment = slot.replace(tzinfo=UTC) if slot.tzinfo is None else slot.astimezone(UTC)  # naive: UTC, as stored
    return f"schedule:{schedule_id}:{moment.isoformat()}"


def get_deployment(name: str) -> dict[str, Any]:
    """A saved deployment by ``"flow/name"`` or id, with its ``schedules``.

    Raises:
        DeploymentNotFound: There is none (the message says how to list them).
    """
    found = control_plane().get_deployment(name)
    if found is None:
        raise DeploymentNotFound(
            f"no deployment {name!r}; give 'flow_name/deployment_name' or an id "
            "(`plait deployment ls` lists them)"
        )
    return dict(found)


def deploy(flow: Flow[..., Any], name: str, **options: Any) -> dict[str, Any]:
    """Save a deployment of ``flow``: ``plait.deployments.deployment_from_flow(flow, name,
    **options).apply()``.

    Options include ``work_pool``, ``cron`` / ``interval`` (+ ``anchor``) / ``rrule`` with
    ``timezone``, ``schedules``, ``parameters``, ``tags``, ``description``, ``version``,
    ``job_variables``, ``concurrency_limit``, ``collision_strategy``, ``catchup``,
    ``max_active_runs``, ``retries``, ``paused`` and ``storage_block`` (the project in the
    current directory is uploaded as a bundle). Without schedule options the deployment
    has no schedule (``keep_schedules=True`` leaves the saved ones).

    Returns:
        The saved deployment, its ``outcome`` key ``"created"``, ``"updated"`` or
        ``"unchanged"``.

    Raises:
        ParameterBindError: A parameter the flow does not take, or of the wrong type.
        DeploymentError: Invalid options, or a work pool that does not exist.
    """
    row, outcome = deployment_from_flow(flow, name, **options).apply()
    return {**row, "outcome": outcome}


def _check_run_parameters(deployment: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    label = f"{deployment.get('flow_name')}/{deployment.get('name')}"
    schema = deployment.get("parameter_schema") or {}
    problems = schema_problems(schema, given, partial=True)
    merged = {**(deployment.get("parameters") or {}), **given}
    problems += [f"parameter {name!r} is required (the deployment has no default for it)"
                 for name in schema.get("required") or [] if name not in merged]
    if problems:
        raise ParameterBindError(f"deployment {label!r}: " + "; ".join(problems))


def _parent_links() -> dict[str, str | None]:
    """The run ``run_deployment`` is called from, if any: the new run is its child."""
    from plait._context import flow_run_var, task_run_var

    flow_ctx, task_ctx = flow_run_var.get(), task_run_var.get()
    flow_run_id = flow_ctx.flow_run.id if flow_ctx else None
    if flow_run_id is None and task_ctx is not None:
        flow_run_id = task_ctx.task_run.flow_run_id
    return {"parent_flow_run_id": flow_run_id, "parent_task_run_id": task_ctx.task_run.id if task_ctx else None}


def _utc(moment: datetime | None, what: str) -> datetime | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        raise DeploymentError(f"{what} must be a datetime, got {type(moment).__name__}")
    return moment.astimezone(UTC)  # a naive time is local time, as datetime.astimezone reads it


def _is_final(state_type: Any) -> bool:
    from plait.states import StateType

    try:
        return bool(StateType(str(state_type)).is_final)
    except ValueError:
        return False


def run_deployment(
    name: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    scheduled_time: datetime | None = None,
    idempotency_key: str | None = None,
    job_variables: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Create a run of a deployment and (unless ``timeout=0``) wait for it to end.

    The run is Scheduled for a worker of the deployment's pool (or its ``serve``
    process). Called inside a flow or task, the new run is linked as its child
    (``parent_flow_run_id``, ``parent_task_run_id``).

    Args:
        name: ``"flow/deployment"`` or the deployment's id.
        parameters: Override the deployment's default parameters; checked against the
            flow's parameter schema before the run is made.
        timeout: Seconds to wait for a final state; ``0`` returns the new run at once,
            None waits as long as it takes.
        poll_interval: Seconds between looks at the run while waiting.
        scheduled_time: When the run may start (default: now).
        idempotency_key: A second call with the same key returns the first call's run.
        job_variables: Override the deployment's and pool's job variables for this run.

    Returns:
        The flow run (``id``, ``state_type``, ``state_name``, ``parameters``...) as last
        seen: final, or whatever it was when ``timeout`` passed.

    Raises:
        DeploymentNotFound: No such deployment.
        ParameterBindError: Unknown parameters, wrong types, or a required one missing.
    """
    from pydantic_core import to_jsonable_python

    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds or None (wait until the run ends), got {timeout!r}")
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
    deployment = get_deployment(name)
    refuse_secret_parameters(str(deployment.get("flow_name")), dict(parameters or {}))
    given = to_jsonable_python(dict(parameters or {}), fallback=str)
    _check_run_parameters(deployment, given)
    plane = control_plane()
    run = dict(plane.create_flow_run(
        deployment["id"], given,
        expected_start_time=_utc(scheduled_time, "scheduled_time"),
        idempotency_key=idempotency_key,
        job_variables=dict(job_variables) if job_variables is not None else None,
        **_parent_links(),
    ))
    if timeout == 0 or _is_final(run.get("state_type")):
        return run
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return run
        time.sleep(poll_interval if remaining is None else min(poll_interval, remaining))
        seen = plane.get_flow_run(run["id"])
        if seen is not None:
            run = dict(seen)
            if _is_final(run.get("state_type")):
                return run


def backfill(
    name: str, start: datetime, end: datetime, *, limit: int = MAX_BACKFILL_RUNS
) -> dict[str, Any]:
    """Create the runs of a deployment's active schedules for the slots in ``[start, end]``.

    Each run gets the idempotency key the scheduler gives that slot
    (``schedule:{schedule_id}:{slot}``), so a slot that already has a run keeps it and
    running backfill twice creates nothing the second time.

    Args:
        name: ``"flow/deployment"`` or the deployment's id.
        start: First moment (inclusive); a naive datetime is local time.
        end: Last moment (inclusive).
        limit: Refuse a backfill of more slots than this.

    Returns:
        ``{"deployment": full name, "slots": n, "created": n, "existing": n, "runs": [...]}``.

    Raises:
        DeploymentNotFound: No such deployment.
        DeploymentError: ``end`` is before ``start``, it has no active schedule, or more
            than ``limit`` slots fall in the range.
    """
    from plait.schedules import schedule_from_spec

    begin, finish = _utc(start, "start"), _utc(end, "end")
    assert begin is not None and finish is not None
    if finish < begin:
        raise DeploymentError(f"backfill end {finish.isoformat()} is before its start {begin.isoformat()}")
    deployment = get_deployment(name)
    label = f"{deployment['flow_name']}/{deployment['name']}"
    schedules = [s for s in deployment.get("schedules") or [] if s.get("active", True)]
    if not schedules:
        raise DeploymentError(f"deployment {label!r} has no active schedule, so it has no slots to backfill")
    slots: list[tuple[datetime, dict[str, Any]]] = []
    for schedule in schedules:
        # slots() answers start < t <= end: a microsecond earlier makes start inclusive
        for slot in schedule_from_spec(schedule).slots(begin - timedelta(microseconds=1), finish, limit + 1):
            slots.append((slot, schedule))
    if len(slots) > limit:
        raise DeploymentError(f"more than {limit} slots of {label!r} fall between {begin.isoformat()} and "
                              f"{finish.isoformat()}; backfill a shorter range, or raise the limit")
    slots.sort(key=lambda item: item[0])
    plane = control_plane()
    runs, created = [], 0
    for slot, schedule in slots:
        before = time.time()
        run = dict(plane.create_flow_run(
            deployment["id"], dict(schedule.get("parameters") or {}),
            expected_start_time=slot, idempotency_key=slot_key(str(schedule["id"]), slot),
        ))
        created += _is_new(run, before)
        runs.append(run)
    return {"deployment": label, "slots": len(slots), "created": created, "existing": len(slots) - created,
            "runs": runs}


def _is_new(run: Mapping[str, Any], before: float) -> bool:
    """Whether ``create_flow_run`` just made ``run`` (rather than answering an earlier run
    with the same key): the control plane says so (``"new"``); failing that, a creation
    time after the call started does (true when the store's clock is ours)."""
    if isinstance(run.get("new"), bool):
        return bool(run["new"])
    created = run.get("created")
    if isinstance(created, str):
        try:
            created = datetime.fromisoformat(created)
        except ValueError:
            return True
    if isinstance(created, datetime):
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return created.timestamp() >= before
    return True
