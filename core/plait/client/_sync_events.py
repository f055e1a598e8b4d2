"""The automations, webhooks and events part of ``PlaitClient`` (a base class of it, kept
in its own module so each stays short)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from plait._api import ApiSession, Event, Page
from plait._api._calls import ApiCalls

__all__ = ["_AutomationsAndEvents"]

Names = str | Sequence[str] | None


class _AutomationsAndEvents:
    """Methods of ``PlaitClient`` for automations, webhooks and events."""

    _session: ApiSession
    _calls: ApiCalls

    # -- automations ----------------------------------------------------------------------------------
    def list_automations(self) -> list[dict[str, Any]]:
        """Every automation by name: ``{id, name, description, enabled, trigger, actions,
        source, created, updated}``; notification rules among them, read-only (``source``
        ``"notification-rule"``)."""
        return self._session.call(self._calls.list_automations())

    def save_automation(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update an automation by its name (needs a key of scope ``admin``).

        Args:
            spec: ``{name, description, enabled, trigger, actions}``, as in an automation
                file (docs/automations.md).

        Returns:
            ``{"automation": {...}, "outcome": "created" | "updated" | "unchanged"}``.

        Raises:
            plait.client.ApiError: The spec is invalid (422, naming each field by its path),
                or a deployment manages the automation of that name (409).
        """
        return self._session.call(self._calls.save_automation(spec))

    def get_automation(self, key: str) -> dict[str, Any]:
        """One automation by name or id, with ``recent_actions`` (its last 20, newest first).

        Raises:
            plait.client.ApiNotFound: No such automation.
        """
        return self._session.call(self._calls.get_automation(key))

    def enable_automation(self, key: str) -> dict[str, Any]:
        """Enable an automation (needs a key of scope ``admin``); returns it."""
        return self._session.call(self._calls.enable_automation(key))

    def disable_automation(self, key: str) -> dict[str, Any]:
        """Disable an automation (needs a key of scope ``admin``): it takes no action until
        enabled again. Returns it."""
        return self._session.call(self._calls.disable_automation(key))

    def delete_automation(self, key: str) -> dict[str, Any]:
        """Delete an automation (needs a key of scope ``admin``); returns what was deleted.

        Raises:
            plait.client.ApiError: A deployment or a notification rule manages it (409).
        """
        return self._session.call(self._calls.delete_automation(key))

    def automation_actions(
        self, key: str, status: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The actions an automation took or is taking, newest first: ``{id, type, status,
        action, created, started, finished, flow_run_id, result, error, event_kind, ...}``
        (``status``: only pending, running, done, failed or skipped ones)."""
        return self._session.call(self._calls.automation_actions(key, status=status, limit=limit))

    # -- webhooks -------------------------------------------------------------------------------------
    def list_webhooks(self) -> list[dict[str, Any]]:
        """Every webhook by name: ``{id, name, slug, path, template, description, enabled,
        created, updated, last_called_at}`` (never its token)."""
        return self._session.call(self._calls.list_webhooks())

    def create_webhook(
        self, name: str, template: str | None = None, *, description: str = "", enabled: bool = True
    ) -> dict[str, Any]:
        """Create a webhook (needs a key of scope ``admin``): a URL that turns the requests it
        receives into events through ``template`` (default: the body as the payload of an
        ``external.webhook-called`` event).

        Returns:
            ``{"webhook": {...}, "token": ..., "path": ...}``: the token is shown this once.

        Raises:
            plait.client.ApiError: The name is taken (409) or the template does not parse
                (400, naming its line and column).
        """
        body: dict[str, Any] = {"name": name, "description": description, "enabled": enabled}
        if template is not None:
            body["template"] = template
        return self._session.call(self._calls.create_webhook(body))

    def get_webhook(self, name: str) -> dict[str, Any]:
        """One webhook by name.

        Raises:
            plait.client.ApiNotFound: No such webhook.
        """
        return self._session.call(self._calls.get_webhook(name))

    def update_webhook(self, name: str, **changes: Any) -> dict[str, Any]:
        """Change a webhook's ``template``, ``description`` or ``enabled`` (needs a key of
        scope ``admin``); returns it."""
        return self._session.call(self._calls.update_webhook(name, changes))

    def rotate_webhook(self, name: str) -> dict[str, Any]:
        """Give a webhook a new token (needs a key of scope ``admin``): ``{"webhook",
        "token"}``; the old token stops working at once."""
        return self._session.call(self._calls.rotate_webhook(name))

    def delete_webhook(self, name: str) -> dict[str, Any]:
        """Delete a webhook (needs a key of scope ``admin``); returns what was deleted."""
        return self._session.call(self._calls.delete_webhook(name))

    # -- events ---------------------------------------------------------------------------------------
    def emit_event(
        self,
        event: str,
        resource: Mapping[str, str],
        payload: Mapping[str, Any] | None = None,
        *,
        occurred: datetime | str | None = None,
    ) -> dict[str, Any]:
        """Store an event of your own (needs a key of scope ``run``); automations see it like
        any other. ``plait.events.emit_event`` is the call for flows (it never fails one).

        Args:
            event: Its kind, lowercase and dotted: ``"warehouse.table.refreshed"``; kinds
                of plait's own (``flow-run.``, ``deployment.``, ``automation.``...) are refused.
            resource: What it is about: ``{"id": "analytics.orders", ...labels}``, all strings.
            payload: Details (JSON; at most 64 KiB with the labels).
            occurred: When it happened (default: now).

        Returns:
            The stored event: ``{seq, id, occurred, kind, resource, payload, labels}``.
        """
        body: dict[str, Any] = {"event": event, "resource": dict(resource), "payload": dict(payload or {})}
        if occurred is not None:
            body["occurred"] = occurred
        return self._session.call(self._calls.emit_event(body))

    def events(
        self,
        *,
        kind: Names = None,
        resource: str | None = None,
        after: int | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        before: int | None = None,
        newest_first: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Event]:
        """One page of stored events, oldest first (``newest_first``: the newest first).

        Args:
            kind: Only events of this kind (or these): ``"flow-run.state-changed"``...
            resource: Only events about resources starting with this (``"flow-run/<id>"``).
            after: Only events after this ``seq``.
            since: Only events at or after this time.
            until: Only events before this time.
            before: Only events before this ``seq``.
            newest_first: List the newest events first (the next page's cursor goes on back).
            limit: At most this many events.
            cursor: The ``next_cursor`` of the previous page.
        """
        return self._session.call(self._calls.events(
            kind=kind, resource=resource, after=after, since=since, until=until, before=before,
            newest_first=newest_first, limit=limit, cursor=cursor))

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
