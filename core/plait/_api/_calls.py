"""The routes of the plait server's API as ``Call`` objects, built without I/O.

One method per route (``/api/v1/...``, named after it). Each returns a ``Call``: the request
and what its answer becomes. ``ApiSession.call`` and ``AsyncApiSession.call`` send it; the
public ``plait.client`` wraps these in documented methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from plait._api._core import ApiCore, Call, Page, Params, Request, as_dict, as_list, query, segment
from plait._api._errors import ApiError
from plait._api._sse import Event
from plait.states import StateType

__all__ = ["ApiCalls", "Filter"]

# A filter given once or several times: ``state="FAILED"`` or ``state=["FAILED", "CRASHED"]``.
Filter = str | Sequence[str] | None


def _states(value: StateType | str | Sequence[StateType | str] | None) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, (str, StateType)) else list(value)
    return [item.value if isinstance(item, StateType) else str(item).strip().upper() for item in items]


def _level(value: int | str | None) -> str | None:
    if value is None:
        return None
    return str(value).strip().upper() if isinstance(value, str) else str(int(value))


def _limit(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"limit must be a whole number >= 1, got {value!r}")
    return value


def _state_type(data: Any) -> StateType | None:
    value = as_dict(data).get("state_type")
    if value is None:
        return None
    try:
        return StateType(value)
    except ValueError:
        raise ApiError(f"the server reported an unknown state type {value!r}", code="bad_response") from None


def _records_answer(data: Any) -> dict[str, Any]:
    answer = as_dict(data)
    taken = answer.get("taken") or []
    if not isinstance(taken, list):
        raise ApiError(f"the answer to POST /records has no list 'taken': {str(answer)[:200]!r}", code="bad_response")
    return answer


def _saved_deployment(data: Any) -> dict[str, Any]:
    answer = as_dict(data)
    if not isinstance(answer.get("deployment"), dict) or not isinstance(answer.get("outcome"), str):
        raise ApiError(f"the answer to POST /deployments is not {{deployment, outcome}}: {str(answer)[:200]!r}",
                       code="bad_response")
    return answer


def _saved_limit(data: Any) -> dict[str, Any]:
    answer = as_dict(data)
    if not isinstance(answer.get("limit"), dict) or not isinstance(answer.get("outcome"), str):
        raise ApiError(f"the answer to PUT /concurrency-limits/{{name}} is not {{limit, outcome}}: "
                       f"{str(answer)[:200]!r}", code="bad_response")
    return answer


def _saved_automation(data: Any) -> dict[str, Any]:
    answer = as_dict(data)
    if not isinstance(answer.get("automation"), dict) or not isinstance(answer.get("outcome"), str):
        raise ApiError(f"the answer to POST /automations is not {{automation, outcome}}: {str(answer)[:200]!r}",
                       code="bad_response")
    return answer


def _created_webhook(data: Any) -> dict[str, Any]:
    answer = as_dict(data)
    if not isinstance(answer.get("webhook"), dict) or not isinstance(answer.get("token"), str):
        raise ApiError("the answer to creating or rotating a webhook has no {webhook, token}", code="bad_response")
    return answer


def _iso_text(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _without_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class ApiCalls(ApiCore):
    """``ApiCore`` with one method per route of the API."""

    # -- service ----------------------------------------------------------------------------------
    def health(self) -> Call[dict[str, Any]]:
        """``GET /health``: ``{status, version, database}`` (needs no key)."""
        return self.call("GET", "/health", as_dict)

    # -- flow runs, task runs, logs, results -----------------------------------------------------
    def flow_runs(
        self,
        *,
        flow: Filter = None,
        state: StateType | str | Sequence[StateType | str] | None = None,
        tag: Filter = None,
        parent: str | None = None,
        top_level: bool | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        upcoming: bool | None = None,
        deployment: Filter = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Call[Page[dict[str, Any]]]:
        """``GET /flow-runs``: one page, newest first."""
        params = query(flow=flow, state=_states(state), tag=tag, parent=parent, top_level=top_level, since=since,
                       until=until, upcoming=upcoming, deployment=deployment, limit=_limit(limit), cursor=cursor)
        return self.page_call("/flow-runs", as_dict, params)

    def flow_run_summary(
        self,
        *,
        flow: Filter = None,
        state: StateType | str | Sequence[StateType | str] | None = None,
        tag: Filter = None,
        deployment: Filter = None,
        top_level: bool | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        buckets: int | None = None,
    ) -> Call[dict[str, Any]]:
        """``GET /flow-runs/summary``: counts by state type, overall and per time bucket."""
        params = query(flow=flow, state=_states(state), tag=tag, deployment=deployment, top_level=top_level,
                       since=since, until=until, buckets=_limit(buckets))
        return self.call("GET", "/flow-runs/summary", as_dict, params=params)

    def flow_run_graph(self, flow_run_id: str) -> Call[dict[str, Any]]:
        """``GET /flow-runs/{id}/graph``: its task runs as nodes, their edges, its subflows."""
        return self.call("GET", f"/flow-runs/{segment(flow_run_id, 'flow_run_id')}/graph", as_dict)

    def flow_run(self, flow_run_id: str) -> Call[dict[str, Any]]:
        """``GET /flow-runs/{id}``: the run with its task runs, edges and state history."""
        return self.call("GET", f"/flow-runs/{segment(flow_run_id, 'flow_run_id')}", as_dict)

    def flow_run_state(self, flow_run_id: str) -> Call[StateType | None]:
        """``GET /flow-runs/{id}/state``: the stored state type (None: no such run)."""
        return self.call("GET", f"/flow-runs/{segment(flow_run_id, 'flow_run_id')}/state", _state_type,
                         absent=lambda: None)

    def flow_run_logs(
        self, flow_run_id: str, *, level: int | str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Call[Page[dict[str, Any]]]:
        """``GET /flow-runs/{id}/logs``: one page of its log lines, oldest first."""
        params = query(level=_level(level), limit=_limit(limit), cursor=cursor)
        return self.page_call(f"/flow-runs/{segment(flow_run_id, 'flow_run_id')}/logs", as_dict, params)

    def task_runs(
        self,
        *,
        flow_run: str | None = None,
        state: StateType | str | Sequence[StateType | str] | None = None,
        task: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Call[Page[dict[str, Any]]]:
        """``GET /task-runs``: one page."""
        params = query(flow_run=flow_run, state=_states(state), task=task, limit=_limit(limit), cursor=cursor)
        return self.page_call("/task-runs", as_dict, params)

    def task_run(self, task_run_id: str) -> Call[dict[str, Any]]:
        """``GET /task-runs/{id}``."""
        return self.call("GET", f"/task-runs/{segment(task_run_id, 'task_run_id')}", as_dict)

    def logs(
        self,
        *,
        flow_run: str | None = None,
        task_run: str | None = None,
        level: int | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Call[Page[dict[str, Any]]]:
        """``GET /logs``: one page of log lines, oldest first."""
        params = query(flow_run=flow_run, task_run=task_run, level=_level(level), limit=_limit(limit), cursor=cursor)
        return self.page_call("/logs", as_dict, params)

    def results(
        self,
        *,
        task_run: str | None = None,
        cache_key: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Call[Page[dict[str, Any]]]:
        """``GET /results``: one page of the results index."""
        params = query(task_run=task_run, cache_key=cache_key, limit=_limit(limit), cursor=cursor)
        return self.page_call("/results", as_dict, params)

    # -- recording ---------------------------------------------------------------------------------
    def post_records(self, batch_id: str, wire: Mapping[str, Any]) -> Call[dict[str, Any]]:
        """``POST /records``: one recorder batch (``BatchRows.to_wire()``), stored once per
        ``batch_id``; answers ``{taken, dropped, reason, duplicate}``."""
        body = {"batch_id": batch_id, "rows": wire}
        return self.call("POST", "/records", _records_answer, body=body)

    def replay_records(self, batch_id: str, wire: Mapping[str, Any]) -> Call[dict[str, Any]]:
        """``POST /records/replay``: a journal's records (idempotent), stored once per ``batch_id``."""
        body = {"batch_id": batch_id, "rows": wire}
        return self.call("POST", "/records/replay", lambda data: as_dict(data) if data is not None else {}, body=body)

    # -- blocks -------------------------------------------------------------------------------------
    def block_types(self) -> Call[list[dict[str, Any]]]:
        """``GET /blocks/types``."""
        return self.call("GET", "/blocks/types", as_list)

    def block_type(self, slug: str) -> Call[dict[str, Any]]:
        """``GET /blocks/types/{slug}``: the type with its schema."""
        return self.call("GET", f"/blocks/types/{segment(slug, 'slug')}", as_dict)

    def block_documents(
        self, *, type: str | None = None, include_anonymous: bool = False  # noqa: A002 - the route's name
    ) -> Call[Page[dict[str, Any]]]:
        """``GET /blocks/documents``: saved blocks (of one type; with ``include_anonymous``,
        nested blocks saved without a name too)."""
        params = query(type=type, include_anonymous=include_anonymous or None)
        return self.page_call("/blocks/documents", as_dict, params)

    def block_document(self, slug: str, name: str, *, include_secrets: bool = False) -> Call[dict[str, Any]]:
        """``GET /blocks/documents/{slug}/{name}``: secret values masked unless
        ``include_secrets`` (which needs a key with scope run)."""
        path = f"/blocks/documents/{segment(slug, 'slug')}/{segment(name, 'name')}"
        params = query(include_secrets=True) if include_secrets else []
        return self.call("GET", path, as_dict, params=params)

    def save_block_document(
        self, slug: str, name: str, body: Mapping[str, Any], *, overwrite: bool = True
    ) -> Call[dict[str, Any]]:
        """``PUT /blocks/documents/{slug}/{name}`` with ``body`` (``{"data": ..., "type": ...}``);
        ``overwrite=False`` refuses to replace a saved block (the server answers 409)."""
        path = f"/blocks/documents/{segment(slug, 'slug')}/{segment(name, 'name')}"
        params = query(overwrite=overwrite)
        return self.call("PUT", path, lambda data: as_dict(data) if data is not None else {}, params=params,
                         body=dict(body))

    def delete_block_document(self, slug: str, name: str) -> Call[dict[str, Any]]:
        """``DELETE /blocks/documents/{slug}/{name}`` (needs scope admin)."""
        path = f"/blocks/documents/{segment(slug, 'slug')}/{segment(name, 'name')}"
        return self.call("DELETE", path, lambda data: as_dict(data) if data is not None else {})

    # -- configuration ------------------------------------------------------------------------------
    def notification_rules(self) -> Call[list[dict[str, Any]]]:
        """``GET /notification-rules``."""
        return self.call("GET", "/notification-rules", as_list)

    def create_notification_rule(self, rule: Mapping[str, Any]) -> Call[dict[str, Any]]:
        """``POST /notification-rules``."""
        return self.call("POST", "/notification-rules", as_dict, body=dict(rule))

    def delete_notification_rule(self, rule_id: str) -> Call[dict[str, Any]]:
        """``DELETE /notification-rules/{id}``."""
        path = f"/notification-rules/{segment(str(rule_id), 'rule_id')}"
        return self.call("DELETE", path, lambda data: as_dict(data) if data is not None else {})

    def collections(self) -> Call[Any]:
        """``GET /collections``: the registry's contents."""
        return self.call("GET", "/collections", lambda data: data)

    def plugins(self) -> Call[Any]:
        """``GET /plugins``: plugin diagnostics."""
        return self.call("GET", "/plugins", lambda data: data)

    # -- deployments ---------------------------------------------------------------------------------
    def deployments(
        self,
        *,
        flow_name: str | None = None,
        work_pool: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Call[Page[dict[str, Any]]]:
        """``GET /deployments``: one page, by flow name then name."""
        params = query(flow_name=flow_name, work_pool=work_pool, limit=_limit(limit), cursor=cursor)
        return self.page_call("/deployments", as_dict, params)

    def deployment(self, ref: str) -> Call[dict[str, Any]]:
        """``GET /deployments/{ref}`` (``ref``: ``"flow/name"`` or the id)."""
        return self.call("GET", f"/deployments/{segment(ref, 'ref')}", as_dict)

    def save_deployment(self, spec: Mapping[str, Any]) -> Call[dict[str, Any]]:
        """``POST /deployments``: create or update; answers ``{deployment, outcome}``."""
        return self.call("POST", "/deployments", _saved_deployment, body=dict(spec))

    def delete_deployment(self, ref: str) -> Call[dict[str, Any]]:
        """``DELETE /deployments/{ref}`` (needs scope admin): answers what was deleted."""
        return self.call("DELETE", f"/deployments/{segment(ref, 'ref')}", as_dict)

    def pause_deployment(self, ref: str) -> Call[dict[str, Any]]:
        """``POST /deployments/{ref}/pause``."""
        return self.call("POST", f"/deployments/{segment(ref, 'ref')}/pause", as_dict)

    def resume_deployment(self, ref: str) -> Call[dict[str, Any]]:
        """``POST /deployments/{ref}/resume``."""
        return self.call("POST", f"/deployments/{segment(ref, 'ref')}/resume", as_dict)

    def create_deployment_run(
        self,
        ref: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        expected_start_time: datetime | str | None = None,
        idempotency_key: str | None = None,
        parent_flow_run_id: str | None = None,
        parent_task_run_id: str | None = None,
        job_variables: Mapping[str, Any] | None = None,
    ) -> Call[dict[str, Any]]:
        """``POST /deployments/{ref}/runs``: a new Scheduled flow run of the deployment (the
        one made before, for an ``idempotency_key`` used before)."""
        body = _without_none(
            parameters=dict(parameters or {}), expected_start_time=_iso_text(expected_start_time),
            idempotency_key=idempotency_key, parent_flow_run_id=parent_flow_run_id,
            parent_task_run_id=parent_task_run_id,
            job_variables=dict(job_variables) if job_variables is not None else None,
        )
        return self.call("POST", f"/deployments/{segment(ref, 'ref')}/runs", as_dict, body=body)

    def claim_deployment_runs(
        self, ref: str, runner_id: str, limit: int = 1, *, holding: Sequence[str] | None = None
    ) -> Call[list[dict[str, Any]]]:
        """``POST /deployments/{ref}/claim``: a ``serve`` process's due runs, now Pending
        (``holding``: the runs it is running; its claims not among them come again)."""
        body: dict[str, Any] = {"runner_id": runner_id, "limit": _limit(limit)}
        if holding is not None:
            body["holding"] = list(holding)
        return self.call("POST", f"/deployments/{segment(ref, 'ref')}/claim", as_list, body=body)

    # -- work pools ---------------------------------------------------------------------------------
    def work_pools(self) -> Call[list[dict[str, Any]]]:
        """``GET /work-pools``."""
        return self.call("GET", "/work-pools", as_list)

    def work_pool(self, name: str) -> Call[dict[str, Any]]:
        """``GET /work-pools/{name}`` with its queues and workers."""
        return self.call("GET", f"/work-pools/{segment(name, 'name')}", as_dict)

    def create_work_pool(
        self,
        name: str,
        type: str = "process",  # noqa: A002 - the API's name
        *,
        description: str = "",
        base_job_variables: Mapping[str, Any] | None = None,
        concurrency_limit: int | None = None,
    ) -> Call[dict[str, Any]]:
        """``POST /work-pools``: a new pool with a queue ``default`` (409 when the name is taken)."""
        body = {"name": name, "type": type, "description": description,
                "base_job_variables": dict(base_job_variables or {}), "concurrency_limit": concurrency_limit}
        return self.call("POST", "/work-pools", as_dict, body=body)

    def update_work_pool(self, name: str, changes: Mapping[str, Any]) -> Call[dict[str, Any]]:
        """``PATCH /work-pools/{name}``: only the fields given change."""
        return self.call("PATCH", f"/work-pools/{segment(name, 'name')}", as_dict, body=dict(changes))

    def delete_work_pool(self, name: str) -> Call[dict[str, Any]]:
        """``DELETE /work-pools/{name}`` (needs scope admin)."""
        return self.call("DELETE", f"/work-pools/{segment(name, 'name')}", as_dict)

    def pause_work_pool(self, name: str) -> Call[dict[str, Any]]:
        """``POST /work-pools/{name}/pause``."""
        return self.call("POST", f"/work-pools/{segment(name, 'name')}/pause", as_dict)

    def resume_work_pool(self, name: str) -> Call[dict[str, Any]]:
        """``POST /work-pools/{name}/resume``."""
        return self.call("POST", f"/work-pools/{segment(name, 'name')}/resume", as_dict)

    def save_work_queue(
        self, pool: str, queue: str, *, priority: int = 1, concurrency_limit: int | None = None, paused: bool = False
    ) -> Call[dict[str, Any]]:
        """``PUT /work-pools/{name}/queues/{queue}``: create or change a queue."""
        path = f"/work-pools/{segment(pool, 'pool')}/queues/{segment(queue, 'queue')}"
        body = {"priority": priority, "concurrency_limit": concurrency_limit, "paused": paused}
        return self.call("PUT", path, as_dict, body=body)

    def worker_heartbeat(
        self, pool: str, name: str, *, hostname: str = "", pid: int | None = None, heartbeat_interval: float = 10.0
    ) -> Call[dict[str, Any]]:
        """``POST /work-pools/{name}/workers/heartbeat``: answers ``{worker_id, cancelling}``."""
        body = {"name": name, "hostname": hostname, "pid": pid, "heartbeat_interval": heartbeat_interval}
        return self.call("POST", f"/work-pools/{segment(pool, 'pool')}/workers/heartbeat", as_dict, body=body)

    def claim_runs(
        self, pool: str, worker_id: str, *, limit: int = 1, queues: Sequence[str] | None = None,
        holding: Sequence[str] | None = None,
    ) -> Call[list[dict[str, Any]]]:
        """``POST /work-pools/{name}/claim``: due runs, now Pending, each with its deployment
        (``holding``: the runs the worker is running; its claims not among them come again)."""
        body: dict[str, Any] = {"worker_id": worker_id, "limit": _limit(limit)}
        if queues is not None:
            body["queues"] = list(queues)
        if holding is not None:
            body["holding"] = list(holding)
        return self.call("POST", f"/work-pools/{segment(pool, 'pool')}/claim", as_list, body=body)

    # -- concurrency limits -------------------------------------------------------------------------
    def concurrency_limits(self) -> Call[list[dict[str, Any]]]:
        """``GET /concurrency-limits``: every limit by name, each with ``used``."""
        return self.call("GET", "/concurrency-limits", as_list)

    def concurrency_limit(self, name: str) -> Call[dict[str, Any]]:
        """``GET /concurrency-limits/{name}`` with its ``slots`` (who holds them)."""
        return self.call("GET", f"/concurrency-limits/{segment(name, 'name')}", as_dict)

    def save_concurrency_limit(
        self,
        name: str,
        limit: int,
        *,
        slot_decay_per_second: float = 0.0,
        active: bool = True,
        description: str = "",
    ) -> Call[dict[str, Any]]:
        """``PUT /concurrency-limits/{name}``: create or change; answers ``{limit, outcome}``."""
        body = {"limit": limit, "slot_decay_per_second": slot_decay_per_second, "active": active,
                "description": description}
        return self.call("PUT", f"/concurrency-limits/{segment(name, 'name')}", _saved_limit, body=body)

    def delete_concurrency_limit(self, name: str) -> Call[dict[str, Any]]:
        """``DELETE /concurrency-limits/{name}`` (needs scope admin): answers what was deleted."""
        return self.call("DELETE", f"/concurrency-limits/{segment(name, 'name')}", as_dict)

    def reset_concurrency_limit(self, name: str) -> Call[dict[str, Any]]:
        """``POST /concurrency-limits/{name}/reset``: answers ``{name, freed}``."""
        return self.call("POST", f"/concurrency-limits/{segment(name, 'name')}/reset", as_dict)

    def acquire_concurrency_slots(
        self,
        names: str | Sequence[str],
        occupy: int = 1,
        *,
        mode: str = "concurrency",
        holder: Mapping[str, Any],
    ) -> Call[dict[str, Any]]:
        """``POST /concurrency-limits/acquire``: all or none; answers ``{acquired, slot_ids,
        blocked_by, used, limits, missing, retry_after}``. ``holder``: ``hostname`` and
        optionally ``flow_run_id``, ``task_run_id``, ``pid``, ``label``."""
        body = {"names": [names] if isinstance(names, str) else list(names), "occupy": occupy, "mode": mode,
                **dict(holder)}
        return self.call("POST", "/concurrency-limits/acquire", as_dict, body=body)

    def release_concurrency_slots(self, slot_ids: Sequence[str]) -> Call[dict[str, Any]]:
        """``POST /concurrency-limits/release``: answers ``{released}`` (unknown ids are ignored)."""
        return self.call("POST", "/concurrency-limits/release", as_dict, body={"slot_ids": list(slot_ids)})

    # -- control of flow runs ---------------------------------------------------------------------
    def cancel_flow_run(self, flow_run_id: str) -> Call[dict[str, Any]]:
        """``POST /flow-runs/{id}/cancel``: answers ``{id, state_type}`` (CANCELLED or CANCELLING)."""
        return self.call("POST", f"/flow-runs/{segment(flow_run_id, 'flow_run_id')}/cancel", as_dict)

    def resume_flow_run(self, flow_run_id: str, input: Mapping[str, Any] | None = None) -> Call[dict[str, Any]]:  # noqa: A002
        """``POST /flow-runs/{id}/resume`` with ``{input}``."""
        body = {"input": dict(input) if input is not None else None}
        return self.call("POST", f"/flow-runs/{segment(flow_run_id, 'flow_run_id')}/resume", as_dict, body=body)

    def retry_flow_run(self, flow_run_id: str) -> Call[dict[str, Any]]:
        """``POST /flow-runs/{id}/retry``: the run, Scheduled again."""
        return self.call("POST", f"/flow-runs/{segment(flow_run_id, 'flow_run_id')}/retry", as_dict)

    def end_flow_run(
        self,
        flow_run_id: str,
        state_type: str,
        message: str,
        *,
        flow_name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        pid: int | None = None,
    ) -> Call[dict[str, Any]]:
        """``POST /flow-runs/{id}/end``: end a run its process could not end (with its
        unfinished task runs and subflows); answers ``{id, ended, state_type}``. With a
        ``flow_name``, a run that was never recorded is created in that state."""
        body: dict[str, Any] = {"state_type": state_type, "message": message}
        if flow_name is not None:
            body["create"] = {"flow_name": flow_name, "parameters": dict(parameters or {}), "pid": pid}
        return self.call("POST", f"/flow-runs/{segment(flow_run_id, 'flow_run_id')}/end", as_dict, body=body)

    def late_reason(self, flow_run_id: str) -> Call[dict[str, Any]]:
        """``GET /flow-runs/{id}/late-reason``: ``{id, state_type, state_name, reason}``."""
        return self.call("GET", f"/flow-runs/{segment(flow_run_id, 'flow_run_id')}/late-reason", as_dict)

    # -- automations -------------------------------------------------------------------------------
    def list_automations(self) -> Call[list[dict[str, Any]]]:
        """``GET /automations``: every automation by name, notification rules among them (read-only)."""
        return self.call("GET", "/automations", as_list)

    def save_automation(self, spec: Mapping[str, Any]) -> Call[dict[str, Any]]:
        """``POST /automations`` (needs scope admin): create or update by name; answers
        ``{automation, outcome}``."""
        return self.call("POST", "/automations", _saved_automation, body=dict(spec))

    def get_automation(self, key: str) -> Call[dict[str, Any]]:
        """``GET /automations/{key}`` (name or id): the automation with ``recent_actions``."""
        return self.call("GET", f"/automations/{segment(key, 'key')}", as_dict)

    def enable_automation(self, key: str) -> Call[dict[str, Any]]:
        """``POST /automations/{key}/enable`` (needs scope admin)."""
        return self.call("POST", f"/automations/{segment(key, 'key')}/enable", as_dict)

    def disable_automation(self, key: str) -> Call[dict[str, Any]]:
        """``POST /automations/{key}/disable`` (needs scope admin)."""
        return self.call("POST", f"/automations/{segment(key, 'key')}/disable", as_dict)

    def delete_automation(self, key: str) -> Call[dict[str, Any]]:
        """``DELETE /automations/{key}`` (needs scope admin): answers what was deleted."""
        return self.call("DELETE", f"/automations/{segment(key, 'key')}", as_dict)

    def automation_actions(
        self, key: str, status: str | None = None, limit: int | None = None
    ) -> Call[list[dict[str, Any]]]:
        """``GET /automations/{key}/actions``: the actions it took, newest first."""
        params = query(status=status, limit=_limit(limit))
        return self.call("GET", f"/automations/{segment(key, 'key')}/actions", as_list, params=params)

    # -- webhooks ------------------------------------------------------------------------------------
    def list_webhooks(self) -> Call[list[dict[str, Any]]]:
        """``GET /webhooks``: every webhook by name (never a token)."""
        return self.call("GET", "/webhooks", as_list)

    def create_webhook(self, body: Mapping[str, Any]) -> Call[dict[str, Any]]:
        """``POST /webhooks`` (needs scope admin) with ``{name, template, description?,
        enabled?}``: answers ``{webhook, token, path}``, the token shown this once."""
        return self.call("POST", "/webhooks", _created_webhook, body=dict(body))

    def get_webhook(self, name: str) -> Call[dict[str, Any]]:
        """``GET /webhooks/by-name/{name}``."""
        return self.call("GET", f"/webhooks/by-name/{segment(name, 'name')}", as_dict)

    def update_webhook(self, name: str, body: Mapping[str, Any]) -> Call[dict[str, Any]]:
        """``PATCH /webhooks/by-name/{name}`` (needs scope admin): ``template``, ``description``
        or ``enabled``, only those given change."""
        return self.call("PATCH", f"/webhooks/by-name/{segment(name, 'name')}", as_dict, body=dict(body))

    def rotate_webhook(self, name: str) -> Call[dict[str, Any]]:
        """``POST /webhooks/by-name/{name}/rotate`` (needs scope admin): a new token,
        ``{webhook, token}``; the old one stops working."""
        return self.call("POST", f"/webhooks/by-name/{segment(name, 'name')}/rotate", _created_webhook)

    def delete_webhook(self, name: str) -> Call[dict[str, Any]]:
        """``DELETE /webhooks/by-name/{name}`` (needs scope admin): answers what was deleted."""
        return self.call("DELETE", f"/webhooks/by-name/{segment(name, 'name')}", as_dict)

    # -- events ------------------------------------------------------------------------------------
    def emit_event(self, body: Mapping[str, Any]) -> Call[dict[str, Any]]:
        """``POST /events`` (needs scope run) with ``{event, resource: {id, ...labels},
        payload?, occurred?}`` (``occurred`` a datetime or ISO text): answers the stored event
        with its ``seq``."""
        sent = dict(body)
        if isinstance(sent.get("occurred"), datetime):
            sent["occurred"] = sent["occurred"].isoformat()
        return self.call("POST", "/events", as_dict, body=sent)

    def events(
        self,
        *,
        kind: Filter = None,
        resource: str | None = None,
        after: int | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        before: int | None = None,
        newest_first: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Call[Page[Event]]:
        """``GET /events``: one page, oldest first (or newest first)."""
        params = query(kind=kind, resource=resource, after=after, since=since, until=until, before=before,
                       order="desc" if newest_first else None, limit=_limit(limit), cursor=cursor)
        return self.page_call("/events", Event.from_json, params)

    def event_stream(
        self, *, kind: Filter = None, resource: str | None = None, after: int | None = None,
        last_event_id: str | None = None,
    ) -> Request:
        """``GET /events/stream``: Server-Sent Events; ``last_event_id`` resumes after it."""
        params: Params = query(kind=kind, resource=resource, after=None if last_event_id else after)
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        return self.request("GET", "/events/stream", params=params, headers=headers)
