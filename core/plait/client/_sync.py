"""``PlaitClient``: the plait server's API from synchronous Python code."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from plait._api import ApiSession, Event, Page
from plait.client._shared import block_body, client_config
from plait.states import StateType

if TYPE_CHECKING:
    import httpx

    from plait.blocks import Block

__all__ = ["PlaitClient"]

StateFilter = StateType | str | Sequence[StateType | str] | None
Names = str | Sequence[str] | None


class PlaitClient:
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
            limit: At most this many runs on the page (the server caps it).
            cursor: The ``next_cursor`` of the previous page.

        Returns:
            ``Page(items, next_cursor)``; large fields (parameters, long messages) of list
            items are truncated (``{"truncated": true, ...}``): ``flow_run(id)`` has them whole.
        """
        return self._session.call(self._calls.flow_runs(
            flow=flow, state=state, tag=tag, parent=parent, top_level=top_level, since=since, until=until,
            limit=limit, cursor=cursor))

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
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every flow run matching the filters (as ``flow_runs``), newest first, fetching
        page after page as the loop goes on."""
        return self._session.items(self._calls.flow_runs(
            flow=flow, state=state, tag=tag, parent=parent, top_level=top_level, since=since, until=until,
            limit=page_size))

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
    def notification_rules(self) -> list[dict[str, Any]]:
        """The notification rules."""
        return self._session.call(self._calls.notification_rules())

    # -- events ---------------------------------------------------------------------------------------
    def events(
        self,
        *,
        kind: Names = None,
        resource: str | None = None,
        after: int | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Event]:
        """One page of stored events, oldest first.

        Args:
            kind: Only events of this kind (or these): ``"flow-run.state-changed"``...
            resource: Only events about resources starting with this (``"flow-run/<id>"``).
            after: Only events after this ``seq``.
            since: Only events at or after this time.
            until: Only events before this time.
            limit: At most this many events.
            cursor: The ``next_cursor`` of the previous page.
        """
        return self._session.call(self._calls.events(kind=kind, resource=resource, after=after, since=since,
                                                     until=until, limit=limit, cursor=cursor))

    def iter_events(
        self,
        *,
        kind: Names = None,
        resource: str | None = None,
        after: int | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Event]:
        """Every stored event matching the filters, oldest first, page after page."""
        return self._session.items(self._calls.events(kind=kind, resource=resource, after=after, since=since,
                                                      until=until, limit=page_size))

    def stream_events(
        self, *, kind: Names = None, resource: str | None = None, after: int | None = None, reconnect: bool = True
    ) -> Iterator[Event]:
        """New events as the server stores them (Server-Sent Events), until the loop stops.

        Args:
            kind: Only events of this kind (or these).
            resource: Only events about resources starting with this.
            after: Start after this ``seq`` (stored events after it come first).
            reconnect: When the connection drops or the server is unavailable, reconnect
                and resume after the last event received; False: stop (or raise) instead.

        Raises:
            plait.client.ApiError: The server refused the subscription (bad key, bad filter).
        """
        return self._session.stream_events(kind=kind, resource=resource, after=after, reconnect=reconnect)
