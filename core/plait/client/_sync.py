"""``PlaitClient``: the plait server's API from synchronous Python code."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from plait._api import ApiSession, Page
from plait.client._artifacts import _Artifacts
from plait.client._shared import block_body, client_config
from plait.client._sync_events import _AutomationsAndEvents
from plait.client._variables import _Variables
from plait.states import StateType

if TYPE_CHECKING:
    import httpx

    from plait.blocks import Block

__all__ = ["PlaitClient"]

StateFilter = StateType | str | Sequence[StateType | str] | None
Names = str | Sequence[str] | None


class PlaitClient(_AutomationsAndEvents, _Variables, _Artifacts):
    """A client of a plait server's API (``/api/v1``), the one the CLI uses when
    ``PLAIT_API_URL`` is set. Keeps its connections open between calls; close it (or use it
    in a ``with``) when done. Thread-safe.

    Args:
        url: The API's URL, e.g. ``http://127.0.0.1:4300/api`` (default: ``PLAIT_API_URL``).
        api_key: The API key (default: ``PLAIT_API_KEY``; none for a server without auth).
        timeout: Seconds one request may take (default: ``PLAIT_API_TIMEOUT``).
        transport: An httpx transport instead of the network (for tests).

    Raises:
        plait.client.ApiConfigError: No URL given and ``PLAIT_API_URL`` is not set, or not
            an http(s) URL.

    Every method raises ``plait.client.ApiError`` when a request fails:
    ``ApiUnavailable`` (no answer: retry later), ``ApiAuthError`` (key refused or scope too
    small), ``ApiNotFound`` (no such thing), or ``ApiError`` itself (e.g. a bad filter,
    its message naming the field).
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._session = ApiSession(client_config(url, api_key, timeout), transport=transport)
        self._calls = self._session.calls

    def __repr__(self) -> str:
        return f"PlaitClient({self.url!r})"

    def __enter__(self) -> PlaitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The API's URL (a password in it masked)."""
        return self._session.config.label

    def close(self) -> None:
        """Close the open connections (the client still works afterwards, reconnecting)."""
        self._session.close()

    # -- service ----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The server's health: ``{"status": "ok", "version", "database"}`` (needs no key)."""
        return self._session.call(self._calls.health())

    # -- flow runs -----------------------------------------------------------------------------------
    def flow_runs(
        self,
        *,
        flow: Names = None,
        state: StateFilter = None,
        tag: Names = None,
        parent: str | None = None,
        top_level: bool | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        upcoming: bool | None = None,
        deployment: Names = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        """One page of flow runs, newest first.

        Args:
            flow: Only runs of this flow (or of any of these flows).
            state: Only runs in this state type (or any of these): ``"FAILED"``, ``StateType.CRASHED``.
            tag: Only runs carrying this tag (several: all of them).
            parent: Only subflow runs of this flow run.
            top_level: True: only runs that are no subflow; False: only subflows.
            since: Only runs created at or after this time.
            until: Only runs created before this time.
            upcoming: True: only Scheduled runs expected to start later (the scheduler
                makes them ahead); False: every run but those.
            deployment: Only runs of this deployment (or any of these): an id or ``"<flow>/<name>"``.
            limit: At most this many runs on the page (the server caps it).
            cursor: The ``next_cursor`` of the previous page.

        Returns:
            ``Page(items, next_cursor)``; large fields (parameters, long messages) of list
            items are truncated (``{"truncated": true, ...}``): ``flow_run(id)`` has them whole.
        """
        return self._session.call(self._calls.flow_runs(
            flow=flow, state=state, tag=tag, parent=parent, top_level=top_level, since=since, until=until,
            upcoming=upcoming, deployment=deployment, limit=limit, cursor=cursor))

    def iter_flow_runs(
        self,
        *,
        flow: Names = None,
        state: StateFilter = None,
        tag: Names = None,
        parent: str | None = None,
        top_level: bool | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        upcoming: bool | None = None,
        deployment: Names = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every flow run matching the filters (as ``flow_runs``), newest first, fetching
        page after page as the loop goes on."""
        return self._session.items(self._calls.flow_runs(
            flow=flow, state=state, tag=tag, parent=parent, top_level=top_level, since=since, until=until,
            upcoming=upcoming, deployment=deployment, limit=page_size))

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        """One flow run in full: parameters, state history, task runs (with their states and
        upstream edges) and subflow runs.

        Raises:
            plait.client.ApiNotFound: No such flow run.
        """
        return self._session.call(self._calls.flow_run(flow_run_id))

    def flow_run_state(self, flow_run_id: str) -> StateType | None:
        """The state type the server holds for a flow run (None: no such run)."""
        return self._session.call(self._calls.flow_run_state(flow_run_id))

    def flow_run_summary(
        self,
        *,
        flow: Names = None,
        state: StateFilter = None,
        tag: Names = None,
        deployment: Names = None,
        top_level: bool | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        buckets: int | None = None,
    ) -> dict[str, Any]:
        """How many flow runs (filtered as ``flow_runs``) were created in ``[since, until)``, by
        state type: ``{total, counts, since, until, bucket_seconds, buckets: [{start, end,
        counts}]}``, the window cut in ``buckets`` equal slices (default 48; ``since``
        defaults to the oldest matching run, ``until`` to now)."""
        return self._session.call(self._calls.flow_run_summary(
            flow=flow, state=state, tag=tag, deployment=deployment, top_level=top_level, since=since, until=until,
            buckets=buckets))

    def flow_run_graph(self, flow_run_id: str) -> dict[str, Any]:
        """A flow run's task runs as graph nodes, the edges between them and its subflow runs
        (``GET /flow-runs/{id}/graph``; docs/api.md has the shape).

        Raises:
            plait.client.ApiNotFound: No such flow run.
        """
        return self._session.call(self._calls.flow_run_graph(flow_run_id))

    # -- task runs, logs, results ----------------------------------------------------------------
    def task_runs(
        self,
        *,
        flow_run: str | None = None,
        state: StateFilter = None,
        task: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        """One page of task runs (of one flow run, in one state, of one task)."""
        return self._session.call(self._calls.task_runs(flow_run=flow_run, state=state, task=task, limit=limit,
                                                        cursor=cursor))

    def iter_task_runs(
        self,
        *,
        flow_run: str | None = None,
        state: StateFilter = None,
        task: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every task run matching the filters, page after page."""
        return self._session.items(self._calls.task_runs(flow_run=flow_run, state=state, task=task,
                                                         limit=page_size))

    def task_run(self, task_run_id: str) -> dict[str, Any]:
        """One task run in full.

        Raises:
            plait.client.ApiNotFound: No such task run.
        """
        return self._session.call(self._calls.task_run(task_run_id))

    def logs(
        self,
        *,
        flow_run: str | None = None,
        task_run: str | None = None,
        level: int | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        """One page of log lines, oldest first.

        Args:
            flow_run: Only lines of this flow run (its tasks' lines included).
            task_run: Only lines of this task run.
            level: Only lines at this level or above (``"WARNING"`` or ``30``).
            limit: At most this many lines.
            cursor: The ``next_cursor`` of the previous page.
        """
        return self._session.call(self._calls.logs(flow_run=flow_run, task_run=task_run, level=level, limit=limit,
                                                   cursor=cursor))

    def iter_logs(
        self,
        *,
        flow_run: str | None = None,
        task_run: str | None = None,
        level: int | str | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every log line matching the filters, oldest first, page after page."""
        return self._session.items(self._calls.logs(flow_run=flow_run, task_run=task_run, level=level,
                                                    limit=page_size))

    def results(
        self,
        *,
        task_run: str | None = None,
        cache_key: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        """One page of the results index (where persisted results are)."""
        return self._session.call(self._calls.results(task_run=task_run, cache_key=cache_key, limit=limit,
                                                      cursor=cursor))

    # -- blocks ----------------------------------------------------------------------------------------
    def block_types(self) -> list[dict[str, Any]]:
        """The block types the server knows: ``{slug, name, description, capabilities,
        secret_fields, ...}``."""
        return self._session.call(self._calls.block_types())

    def block_type(self, slug: str) -> dict[str, Any]:
        """One block type with its JSON schema.

        Raises:
            plait.client.ApiNotFound: No such type.
        """
        return self._session.call(self._calls.block_type(slug))

    def block_documents(
        self, type: str | None = None, include_anonymous: bool = False  # noqa: A002 - the API's name
    ) -> list[dict[str, Any]]:
        """Saved blocks (of one type): ``{name, slug, type_name, id, created, updated}``;
        ``include_anonymous`` adds nested blocks saved without a name of their own."""
        call = self._calls.block_documents(type=type, include_anonymous=include_anonymous)
        return list(self._session.items(call))

    def block_document(self, slug: str, name: str, include_secrets: bool = False) -> dict[str, Any]:
        """One saved block: ``{id, name, slug, type_name, created, updated, data, ...}``, nested
        blocks inline.

        Args:
            slug: The block type's slug.
            name: The block's name.
            include_secrets: Return secret values in plain text (needs a key of scope
                ``run``); otherwise they are ``"***"``.

        Raises:
            plait.client.ApiNotFound: No such block.
            plait.client.ApiAuthError: ``include_secrets`` with a key of scope ``read``.
        """
        return self._session.call(self._calls.block_document(slug, name, include_secrets=include_secrets))

    def save_block_document(
        self, slug: str, name: str, data: Mapping[str, Any], type: Mapping[str, Any], overwrite: bool = False  # noqa: A002
    ) -> dict[str, Any]:
        """Save a block from its values and its type's schema information (the server
        encrypts the secrets; ``save_block`` builds both from a block object).

        Args:
            slug: The block type's slug.
            name: The block's name.
            data: Field values, secrets in plain text, nested blocks as ``{"$block": "slug/name"}``.
            type: The type: ``{slug, name, description, capabilities, secret_fields,
                block_fields, json_schema}``.
            overwrite: Replace a saved block of that name (else that is an error).

        Returns:
            The saved document, secrets masked.
        """
        body = {"type": dict(type), "data": dict(data)}
        return self._session.call(self._calls.save_block_document(slug, name, body, overwrite=overwrite))

    def save_block(self, block: Block, name: str, overwrite: bool = False) -> dict[str, Any]:
        """Save a block object on the server as ``name`` (what ``block.save(name)`` does when
        ``PLAIT_API_URL`` is set).

        Returns:
            The saved document, secrets masked.
        """
        slug, body = block_body(block)
        return self._session.call(self._calls.save_block_document(slug, name, body, overwrite=overwrite))

    def delete_block_document(self, slug: str, name: str) -> dict[str, Any]:
        """Delete a saved block (needs a key of scope ``admin``).

        Raises:
            plait.client.ApiNotFound: No such block.
            plait.client.ApiError: Another saved block uses it (409).
        """
        return self._session.call(self._calls.delete_block_document(slug, name))

    # -- configuration ---------------------------------------------------------------------------------
    def collections(self) -> Any:
        """The collections registry the server knows (``GET /collections``): each
        collection's blocks, tasks, versions and install command."""
        return self._session.call(self._calls.collections())

    def notification_rules(self) -> list[dict[str, Any]]:
        """The notification rules."""
        return self._session.call(self._calls.notification_rules())

    # -- deployments ---------------------------------------------------------------------------------
    def deployments(
        self,
        *,
        flow_name: str | None = None,
        work_pool: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        """One page of deployments (of one flow, run by one work pool), with their schedules."""
        return self._session.call(self._calls.deployments(flow_name=flow_name, work_pool=work_pool, limit=limit,
                                 cursor=cursor))

    def iter_deployments(
        self, *, flow_name: str | None = None, work_pool: str | None = None, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every deployment matching the filters, page after page."""
        return self._session.items(self._calls.deployments(flow_name=flow_name, work_pool=work_pool,
                                                           limit=page_size))

    def deployment(self, ref: str) -> dict[str, Any]:
        """One deployment with its schedules, by ``"flow_name/deployment_name"`` or id.

        Raises:
            plait.client.ApiNotFound: No such deployment.
        """
        return self._session.call(self._calls.deployment(ref))

    def save_deployment(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update a deployment from its spec (the fields of ``POST /deployments``:
        ``flow_name``, ``name``, ``entrypoint``, ``parameters``, ``work_pool_name``,
        ``schedules``...; ``schedules=None`` keeps the saved ones, ``[]`` clears them).

        Returns:
            ``{"deployment": {...}, "outcome": "created" | "updated" | "unchanged"}``.

        Raises:
            plait.client.ApiError: The spec is invalid (422, naming the field).
        """
        return self._session.call(self._calls.save_deployment(spec))

    def delete_deployment(self, ref: str) -> dict[str, Any]:
        """Delete a deployment (needs a key of scope ``admin``); its runs not yet started end
        Cancelled. Returns what was deleted."""
        return self._session.call(self._calls.delete_deployment(ref))

    def pause_deployment(self, ref: str) -> dict[str, Any]:
        """Pause a deployment: no new scheduled runs, nobody claims its runs."""
        return self._session.call(self._calls.pause_deployment(ref))

    def resume_deployment(self, ref: str) -> dict[str, Any]:
        """Resume a paused deployment (its schedules are planned again)."""
        return self._session.call(self._calls.resume_deployment(ref))

    def create_deployment_run(
        self,
        ref: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        expected_start_time: datetime | str | None = None,
        idempotency_key: str | None = None,
        parent_flow_run_id: str | None = None,
        parent_task_run_id: str | None = None,
        job_variables: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new Scheduled run of a deployment, for a worker (or its ``serve``) to run.

        Args:
            ref: ``"flow_name/deployment_name"`` or the deployment's id.
            parameters: Update the deployment's default parameters.
            expected_start_time: When it may start (default: now).
            idempotency_key: Asking again with the same key returns the same run.
            parent_flow_run_id: The flow run it is a subflow of.
            parent_task_run_id: The task run standing for it in that flow run.
            job_variables: Update the pool's and deployment's job variables for this run.

        Returns:
            The flow run (``state_type`` ``"SCHEDULED"``).
        """
        return self._session.call(self._calls.create_deployment_run(
            ref, parameters=parameters, expected_start_time=expected_start_time, idempotency_key=idempotency_key,
            parent_flow_run_id=parent_flow_run_id, parent_task_run_id=parent_task_run_id,
            job_variables=job_variables))

    def claim_deployment_runs(
        self, ref: str, runner_id: str, limit: int = 1, *, holding: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Claim up to ``limit`` due runs of a deployment for a ``serve`` process (each now
        Pending, with its ``deployment``; ``holding`` as for ``claim_runs``)."""
        return self._session.call(self._calls.claim_deployment_runs(ref, runner_id, limit, holding=holding))

    # -- work pools -----------------------------------------------------------------------------------
    def work_pools(self) -> list[dict[str, Any]]:
        """Every work pool."""
        return self._session.call(self._calls.work_pools())

    def work_pool(self, name: str) -> dict[str, Any]:
        """One work pool with its ``queues`` and ``workers`` (each ``online`` or ``offline``).

        Raises:
            plait.client.ApiNotFound: No such work pool.
        """
        return self._session.call(self._calls.work_pool(name))

    def create_work_pool(
        self,
        name: str,
        type: str = "process",  # noqa: A002 - the API's name
        *,
        description: str = "",
        base_job_variables: Mapping[str, Any] | None = None,
        concurrency_limit: int | None = None,
    ) -> dict[str, Any]:
        """Create a work pool (with a queue ``default``) of an infrastructure kind.

        Raises:
            plait.client.ApiError: A pool with this name exists (409).
        """
        return self._session.call(self._calls.create_work_pool(
            name, type, description=description, base_job_variables=base_job_variables,
            concurrency_limit=concurrency_limit))

    def update_work_pool(self, name: str, **changes: Any) -> dict[str, Any]:
        """Change ``description``, ``base_job_variables`` or ``concurrency_limit`` (None lifts it)."""
        return self._session.call(self._calls.update_work_pool(name, changes))

    def delete_work_pool(self, name: str) -> dict[str, Any]:
        """Delete a work pool (needs a key of scope ``admin``); returns what was deleted."""
        return self._session.call(self._calls.delete_work_pool(name))

    def pause_work_pool(self, name: str) -> dict[str, Any]:
        """Pause a work pool: its workers claim nothing until it is resumed."""
        return self._session.call(self._calls.pause_work_pool(name))

    def resume_work_pool(self, name: str) -> dict[str, Any]:
        """Resume a paused work pool."""
        return self._session.call(self._calls.resume_work_pool(name))

    def save_work_queue(
        self, pool: str, queue: str, *, priority: int = 1, concurrency_limit: int | None = None, paused: bool = False
    ) -> dict[str, Any]:
        """Create or change a queue of a pool (priority 1 is served first)."""
        call = self._calls.save_work_queue(pool, queue, priority=priority, concurrency_limit=concurrency_limit,
                                           paused=paused)
        return self._session.call(call)

    def worker_heartbeat(
        self, pool: str, name: str, *, hostname: str = "", pid: int | None = None, heartbeat_interval: float = 10.0
    ) -> dict[str, Any]:
        """A worker's heartbeat: registers it in the pool.

        Returns:
            ``{"worker_id": ..., "cancelling": [flow run ids it claimed that are now Cancelling]}``.
        """
        return self._session.call(self._calls.worker_heartbeat(pool, name, hostname=hostname, pid=pid,
                                                 heartbeat_interval=heartbeat_interval))

    def claim_runs(
        self, pool: str, worker_id: str, *, limit: int = 1, queues: Sequence[str] | None = None,
        holding: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Claim up to ``limit`` due runs of a pool for a worker (each now Pending, with its
        ``deployment``); no two workers ever get the same run. ``holding``: the ids of the
        runs the worker is running; runs claimed for it that it never received (the answer
        was lost) come again instead of new ones."""
        return self._session.call(self._calls.claim_runs(pool, worker_id, limit=limit, queues=queues,
                                                             holding=holding))

    # -- concurrency limits ----------------------------------------------------------------------------
    def concurrency_limits(self) -> list[dict[str, Any]]:
        """Every concurrency limit by name, each with ``used`` (slots in use now)."""
        return self._session.call(self._calls.concurrency_limits())

    def concurrency_limit(self, name: str) -> dict[str, Any]:
        """One concurrency limit with its ``slots``: who holds them (``label``, ``hostname``,
        ``pid``, ``acquired_at``), oldest first.

        Raises:
            plait.client.ApiNotFound: No such limit.
        """
        return self._session.call(self._calls.concurrency_limit(name))

    def save_concurrency_limit(
        self,
        name: str,
        limit: int,
        *,
        slot_decay_per_second: float = 0.0,
        active: bool = True,
        description: str = "",
    ) -> dict[str, Any]:
        """Create or change a concurrency limit of ``limit`` slots (``slot_decay_per_second``
        above 0 makes it a rate limit too; ``active=False`` makes it constrain nothing).

        Returns:
            ``{"limit": ..., "outcome": "created" | "updated" | "unchanged"}``.
        """
        return self._session.call(self._calls.save_concurrency_limit(
            name, limit, slot_decay_per_second=slot_decay_per_second, active=active, description=description))

    def delete_concurrency_limit(self, name: str) -> dict[str, Any]:
        """Delete a concurrency limit and its held slots (needs a key of scope ``admin``);
        returns what was deleted.

        Raises:
            plait.client.ApiNotFound: No such limit.
        """
        return self._session.call(self._calls.delete_concurrency_limit(name))

    def reset_concurrency_limit(self, name: str) -> dict[str, Any]:
        """Free every slot held of a limit and empty its rate bucket: ``{"name", "freed"}``.

        Raises:
            plait.client.ApiNotFound: No such limit.
        """
        return self._session.call(self._calls.reset_concurrency_limit(name))

    def acquire_concurrency_slots(
        self,
        names: str | Sequence[str],
        occupy: int = 1,
        *,
        mode: str = "concurrency",
        holder: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Take ``occupy`` slots of each named limit that is active, all or none, once (no
        waiting: ``plait.concurrency`` waits and retries).

        Args:
            names: A limit's name or several; names with no limit constrain nothing.
            occupy: Slots to take of each.
            mode: ``"concurrency"`` (held until released) or ``"rate"`` (they drain away).
            holder: ``hostname`` and optionally ``flow_run_id``, ``task_run_id``, ``pid``,
                ``label`` (shown to people as who holds the slots).

        Returns:
            ``{"acquired", "slot_ids", "blocked_by", "used", "limits", "missing", "retry_after"}``.

        Raises:
            plait.client.ApiError: It can never fit, or mode ``rate`` meets a limit without
                slot decay (422).
        """
        return self._session.call(self._calls.acquire_concurrency_slots(names, occupy, mode=mode, holder=holder))

    def release_concurrency_slots(self, slot_ids: Sequence[str]) -> dict[str, Any]:
        """Let go of slots ``acquire_concurrency_slots`` answered: ``{"released": n}``
        (unknown ids are ignored)."""
        return self._session.call(self._calls.release_concurrency_slots(slot_ids))

    # -- control of flow runs ---------------------------------------------------------------------------
    def cancel_flow_run(self, flow_run_id: str) -> dict[str, Any]:
        """Cancel a flow run: ``{"id", "state_type"}``, ``CANCELLED`` if it had not started,
        else ``CANCELLING`` until whatever runs it stops it.

        Raises:
            plait.client.ApiError: It has already ended (409).
        """
        return self._session.call(self._calls.cancel_flow_run(flow_run_id))

    def resume_flow_run(self, flow_run_id: str, input: Mapping[str, Any] | None = None) -> dict[str, Any]:  # noqa: A002
        """Resume a Paused flow run with the input it waits for.

        Raises:
            plait.client.ApiError: It is not paused (409), or the input does not fit (422).
        """
        return self._session.call(self._calls.resume_flow_run(flow_run_id, input))

    def retry_flow_run(self, flow_run_id: str) -> dict[str, Any]:
        """Schedule a Failed or Crashed flow run again (its completed task runs are not run again)."""
        return self._session.call(self._calls.retry_flow_run(flow_run_id))

    def end_flow_run(self, flow_run_id: str, state_type: str, message: str) -> dict[str, Any]:
        """End a flow run its process could not end (CRASHED, FAILED or CANCELLED), with its
        unfinished task runs and subflows: ``{"id", "ended", "state_type"}`` (``ended`` is
        False when it had already ended)."""
        return self._session.call(self._calls.end_flow_run(flow_run_id, state_type, message))

    def late_reason(self, flow_run_id: str) -> dict[str, Any]:
        """Why a Scheduled or Late flow run has not started: ``{"id", "state_type",
        "state_name", "reason"}``."""
        return self._session.call(self._calls.late_reason(flow_run_id))
