"""``RemoteControl``: the control plane on a plait server, through its API (``plait._api``).

The same methods and answers as ``LocalControl`` (see ``plait.deployments._control``); the
API's ISO 8601 times come back as datetimes (``revive_times``) and its 404, 400, 409 and 422
answers as ``ControlNotFound`` and ``ControlRefused``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from plait.deployments._control import ControlNotFound, ControlPlane, ControlRefused, _utc, revive_times

if TYPE_CHECKING:
    from plait._api import ApiCalls, ApiSession, Call

__all__ = ["RemoteControl"]

T = TypeVar("T")


class RemoteControl(ControlPlane):
    """The control plane on a plait server, through its API (``plait._api``).

    Args:
        session: The session to send requests with (default: one from the settings,
            ``PLAIT_API_URL`` and ``PLAIT_API_KEY``, made at the first request).
    """

    def __init__(self, session: ApiSession | None = None) -> None:
        self._session = session

    def __repr__(self) -> str:
        label = self._session.config.label if self._session is not None else "PLAIT_API_URL"
        return f"RemoteControl({label!r})"

    @property
    def session(self) -> ApiSession:
        """The API session (made from the settings at first use)."""
        if self._session is None:
            from plait._api import ApiSession

            self._session = ApiSession.from_settings()
        return self._session

    @property
    def calls(self) -> ApiCalls:
        return self.session.calls

    def _send(self, call: Call[T]) -> T:
        """Send ``call``; the server's 404 as ``ControlNotFound``, its 400/409/422 as
        ``ControlRefused`` (other failures stay ``ApiError``s: unavailable, auth)."""
        from plait._api import ApiError, ApiNotFound

        try:
            return self.session.call(call)
        except ApiNotFound as exc:
            raise ControlNotFound(exc.message) from None
        except ApiError as exc:
            if exc.status in (400, 409, 422):
                raise ControlRefused(exc.message) from None
            raise

    def _maybe(self, call: Call[dict[str, Any]]) -> dict[str, Any] | None:
        try:
            return revive_times(self._send(call))
        except ControlNotFound:
            return None

    def close(self) -> None:
        """Close the session's kept-alive connections."""
        if self._session is not None:
            self._session.close()

    # -- deployments -------------------------------------------------------------------------------
    def save_deployment(self, spec: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        from pydantic_core import to_jsonable_python

        answer = self._send(self.calls.save_deployment(to_jsonable_python(dict(spec))))
        return revive_times(answer["deployment"]), str(answer["outcome"])

    def get_deployment(self, ref: str) -> dict[str, Any] | None:
        return self._maybe(self.calls.deployment(ref))

    def list_deployments(self, *, flow_name: str | None = None, work_pool: str | None = None) -> list[dict[str, Any]]:
        call = self.calls.deployments(flow_name=flow_name, work_pool=work_pool, limit=500)
        return [revive_times(row) for row in self.session.items(call)]

    def set_deployment_paused(self, ref: str, paused: bool) -> dict[str, Any]:
        call = self.calls.pause_deployment(ref) if paused else self.calls.resume_deployment(ref)
        return revive_times(self._send(call))

    def delete_deployment(self, ref: str) -> bool:
        try:
            self._send(self.calls.delete_deployment(ref))
        except ControlNotFound:
            return False
        return True

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
        from pydantic_core import to_jsonable_python

        call = self.calls.create_deployment_run(
            deployment_ref, parameters=to_jsonable_python(dict(parameters or {})),
            expected_start_time=_utc(expected_start_time), idempotency_key=idempotency_key,
            parent_flow_run_id=parent_flow_run_id, parent_task_run_id=parent_task_run_id,
            job_variables=to_jsonable_python(dict(job_variables)) if job_variables is not None else None,
        )
        return revive_times(self._send(call))

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
        call = self.calls.create_work_pool(name, type, description=description,
                                           base_job_variables=base_job_variables,
                                           concurrency_limit=concurrency_limit)
        return revive_times(self._send(call))

    def get_work_pool(self, name: str) -> dict[str, Any] | None:
        return self._maybe(self.calls.work_pool(name))

    def list_work_pools(self) -> list[dict[str, Any]]:
        return [revive_times(row) for row in self._send(self.calls.work_pools())]

    def update_work_pool(self, name: str, **changes: Any) -> dict[str, Any]:
        return revive_times(self._send(self.calls.update_work_pool(name, changes)))

    def set_work_pool_paused(self, name: str, paused: bool) -> dict[str, Any]:
        call = self.calls.pause_work_pool(name) if paused else self.calls.resume_work_pool(name)
        return revive_times(self._send(call))

    def delete_work_pool(self, name: str) -> bool:
        try:
            self._send(self.calls.delete_work_pool(name))
        except ControlNotFound:
            return False
        return True

    def save_work_queue(
        self, pool_name: str, name: str, *, priority: int = 1, concurrency_limit: int | None = None,
        paused: bool = False,
    ) -> dict[str, Any]:
        call = self.calls.save_work_queue(pool_name, name, priority=priority, concurrency_limit=concurrency_limit,
                                          paused=paused)
        return revive_times(self._send(call))

    def worker_heartbeat(
        self, pool_name: str, worker_name: str, hostname: str, pid: int | None, heartbeat_interval: float
    ) -> dict[str, Any]:
        call = self.calls.worker_heartbeat(pool_name, worker_name, hostname=hostname, pid=pid,
                                           heartbeat_interval=heartbeat_interval)
        answer = self._send(call)
        return {"worker_id": str(answer["worker_id"]), "cancelling": [str(i) for i in answer.get("cancelling") or ()]}

    def claim_runs(
        self, pool_name: str, worker_id: str, limit: int = 1, queues: Sequence[str] | None = None,
        holding: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        call = self.calls.claim_runs(pool_name, worker_id, limit=limit, queues=queues, holding=holding)
        return [revive_times(row) for row in self._send(call)]

    def claim_deployment_runs(
        self, deployment_id: str, runner_id: str, limit: int = 1, holding: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        call = self.calls.claim_deployment_runs(deployment_id, runner_id, limit, holding=holding)
        return [revive_times(row) for row in self._send(call)]

    def touch_deployment(self, deployment_id: str) -> None:
        """Nothing to send: every claim through the API marks the deployment polled."""

    # -- run control --------------------------------------------------------------------------------
    def request_cancel(self, flow_run_id: str) -> str:
        return str(self._send(self.calls.cancel_flow_run(flow_run_id))["state_type"])

    def end_flow_run(
        self, flow_run_id: str, state_type: str, message: str, *, flow_name: str = "unknown",
        parameters: Mapping[str, Any] | None = None,
    ) -> bool:
        from pydantic_core import to_jsonable_python

        from plait.infrastructure import settle_records

        settle_records()
        call = self.calls.end_flow_run(flow_run_id, state_type.upper(), message, flow_name=flow_name,
                                       parameters=to_jsonable_python(dict(parameters or {})))
        return bool(self._send(call)["ended"])

    def cancelling_among(self, flow_run_ids: Iterable[str]) -> set[str]:
        """One listing of the Cancelling runs (they are few and short-lived), intersected
        with ``flow_run_ids``."""
        ids = set(flow_run_ids)
        if not ids:
            return set()
        call = self.calls.flow_runs(state="CANCELLING", limit=500)
        return {str(row["id"]) for row in self.session.items(call) if row.get("id") in ids}

    def get_flow_run(self, flow_run_id: str) -> dict[str, Any] | None:
        try:
            return self._send(self.calls.flow_run(flow_run_id))
        except ControlNotFound:
            return None

    def late_reason(self, flow_run_id: str) -> str:
        return str(self._send(self.calls.late_reason(flow_run_id))["reason"])

    def plan(self, now: datetime | None = None) -> int:
        """Nothing to do: the server's scheduler plans every deployment's runs."""
        return 0

    def resume_flow_run(self, flow_run_id: str, input: Mapping[str, Any] | None = None) -> dict[str, Any]:  # noqa: A002
        from pydantic_core import to_jsonable_python

        body = to_jsonable_python(dict(input)) if input is not None else None
        return revive_times(self._send(self.calls.resume_flow_run(flow_run_id, body)))

    def retry_flow_run(self, flow_run_id: str) -> dict[str, Any]:
        return revive_times(self._send(self.calls.retry_flow_run(flow_run_id)))
