"""Webhooks: named URLs that turn an incoming HTTP request into an event.

::

    from plait.automations._webhooks import create_webhook

    made = create_webhook("github-push", template='''{
        "event": "github.push",
        "resource": {"id": "github/{{ body.repository.full_name }}", "branch": {{ body.ref | tojson }}},
        "payload": {"after": {{ body.after | tojson }}, "pusher": {{ body.pusher.name | tojson }}}
    }''')
    made["token"]  # shown once: the sender puts it in `Authorization: Bearer <token>`

The server answers ``POST /api/v1/webhooks/<slug>`` (no API key: the webhook's own token, in
``Authorization: Bearer``, ``X-Plait-Webhook-Token`` or ``?token=``). The template (Jinja2,
sandboxed: ``plait.automations._templates``) renders the JSON text of ``{"event": kind,
"resource": {"id": ..., labels...}, "payload": {...}}`` from ``body`` (the parsed JSON, or
the text when it is not JSON), ``text`` (the raw body), ``headers`` (lower-case names,
without the token and credentials), ``query`` (without the token), ``method`` and
``webhook`` (``{name}``). The event is checked as ``plait.events.emit_event`` checks one
(kinds plait uses itself are refused, labels are text, 64 KiB at most), masked, labelled
``webhook: <name>`` and stored.

The functions here go to the server ``PLAIT_API_URL`` names when it is set, else to the
local store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from plait._batch import clean_text
from plait.automations._templates import TemplateError, check_template, render_json

__all__ = [
    "DEFAULT_TEMPLATE",
    "TemplateError",
    "WebhookEventError",
    "TOKEN_HEADER",
    "template_what",
    "check_webhook_template",
    "call_context",
    "event_from_call",
    "create_webhook",
    "list_webhooks",
    "get_webhook",
    "update_webhook",
    "rotate_webhook_token",
    "delete_webhook",
    "webhook_url",
]

# The event of a webhook made without a template: the body as the payload (a body that is
# not a JSON object is put under "body").
DEFAULT_TEMPLATE = (
    '{"event": "external.webhook-called", "resource": {"id": {{ ("webhook/" ~ webhook.name) | tojson }}}, '
    '"payload": {% if body is mapping %}{{ body | tojson }}{% else %}{{ {"body": body} | tojson }}{% endif %}}'
)
TOKEN_HEADER = "x-plait-webhook-token"
# Never handed to a template: the token itself and credentials meant for someone else.
_HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", TOKEN_HEADER})
_OUTPUT_KEYS = frozenset({"event", "resource", "payload"})
_MAX_DEPTH = 64


class WebhookEventError(ValueError):
    """A call whose template output is not an event (the server answers 400)."""


def template_what(name: str) -> str:
    """How messages name the template of the webhook ``name``."""
    return f"template of webhook {name!r}"


def check_webhook_template(name: str, template: str) -> None:
    """Refuse a template that cannot render (syntax, unknown filters...).

    Raises:
        TemplateError: Naming the webhook, the line and the column.
    """
    check_template(template, what=template_what(name))


# -- a call -----------------------------------------------------------------------------------------
def _parsed_body(text: str) -> Any:
    if not text.strip():
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def call_context(
    name: str,
    body: bytes,
    headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]],
    method: str = "POST",
) -> dict[str, Any]:
    """The variables a webhook's template sees for one call.

    Args:
        name: The webhook's name.
        body: The raw request body.
        headers: The request's headers (repeated ones are joined with ", ").
        query: The query parameters (the first value of a repeated one counts).
        method: The HTTP method.
    """
    text = body.decode("utf-8", "replace")
    seen: dict[str, str] = {}
    for key, value in headers:
        lower = key.lower()
        if lower in _HIDDEN_HEADERS:
            continue
        seen[lower] = f"{seen[lower]}, {value}" if lower in seen else value
    params: dict[str, str] = {}
    for key, value in query:
        if key != "token":
            params.setdefault(key, value)
    return {"body": _parsed_body(text), "text": text, "headers": seen, "query": params, "method": method,
            "webhook": {"name": name}}


def _cleaned(value: Any, depth: int = 0) -> Any:
    """``value`` with NUL made visible and lone surrogates replaced in every text (keys
    too): what a sender's JSON may hold but no database stores."""
    if depth > _MAX_DEPTH:
        raise WebhookEventError(f"the event is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {clean_text(k) if isinstance(k, str) else k: _cleaned(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_cleaned(v, depth + 1) for v in value]
    return value


def event_from_call(name: str, template: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """Render the webhook's template over one call and check the event it describes.

    Returns:
        The event ready to store, masked: ``{kind, resource_id, labels, payload}``
        (``labels`` has ``webhook: <name>``).

    Raises:
        TemplateError: The template failed (an undefined field of the body, ...).
        WebhookEventError: Its output is not an event (the message says what is wrong).
    """
    from plait.events import check_event

    output = render_json(template, context, what=template_what(name))
    if not isinstance(output, dict):
        raise WebhookEventError(f"the {template_what(name)} gives {type(output).__name__}, not an object "
                                '{"event": ..., "resource": {"id": ...}, "payload": {...}}')
    unknown = sorted(str(k) for k in set(output) - _OUTPUT_KEYS)
    if unknown:
        raise WebhookEventError(f"the {template_what(name)} gives unknown key(s) {', '.join(unknown)}; an event "
                                "has event, resource and payload")
    output = _cleaned(output)
    resource = output.get("resource")
    if not isinstance(resource, dict):
        raise WebhookEventError(f"the {template_what(name)} gives no resource object "
                                '("resource": {"id": "what the event is about"})')
    try:
        checked = check_event(output.get("event"), {**resource, "webhook": name}, output.get("payload"))
    except ValueError as exc:
        raise WebhookEventError(f"the {template_what(name)} made no valid event: {exc}") from None
    return {k: checked[k] for k in ("kind", "resource_id", "labels", "payload")}


# -- managing webhooks, locally or through the server ------------------------------------------------
def _api_url() -> str | None:
    from plait.settings import get_settings

    return get_settings().api_url


def _remote(make: Callable[[Any], Any]) -> Any:
    from plait._api import ApiSession

    with ApiSession.from_settings() as session:
        return session.call(make(session.calls))


def _db() -> Any:
    from plait._store.database import get_database

    return get_database()


def create_webhook(
    name: str, template: str | None = None, *, description: str = "", enabled: bool = True
) -> dict[str, Any]:
    """Create a webhook: ``{"webhook", "token", "path"}`` (the token is shown this once).

    Args:
        name: Its name: letters, digits, ``.``, ``_``, ``-`` (e.g. ``github-push``).
        template: The Jinja2 text of the event (default ``DEFAULT_TEMPLATE``: kind
            ``external.webhook-called`` on ``webhook/<name>`` with the body as payload).
        description: What it is for.
        enabled: False: its URL answers 404 until it is enabled.

    Raises:
        TemplateError: The template does not parse (line and column named).
        ValueError: The name is taken or malformed.
        plait.client.ApiError: (remote) The server refused or did not answer.
    """
    text = DEFAULT_TEMPLATE if template is None else template
    if _api_url():
        body = {"name": name, "template": text, "description": description, "enabled": enabled}
        return dict(_remote(lambda calls: calls.create_webhook(body)))
    from plait._store import webhooks

    check_webhook_template(name, text)
    made, token = webhooks.create_webhook(_db(), name, text, description=description, enabled=enabled)
    return {"webhook": made, "token": token, "path": made["path"]}


def list_webhooks() -> list[dict[str, Any]]:
    """Every webhook by name (never a token)."""
    if _api_url():
        return list(_remote(lambda calls: calls.list_webhooks()))
    from plait._store import webhooks

    return webhooks.list_webhooks(_db())


def get_webhook(name: str) -> dict[str, Any]:
    """The webhook ``name``.

    Raises:
        LookupError: (local) No such webhook. plait.client.ApiNotFound: (remote) the same.
    """
    if _api_url():
        return dict(_remote(lambda calls: calls.get_webhook(name)))
    from plait._store import webhooks

    return webhooks.get_webhook(_db(), name)


def update_webhook(
    name: str, *, template: str | None = None, description: str | None = None, enabled: bool | None = None
) -> dict[str, Any]:
    """Change the given fields of the webhook ``name`` (None: keep); returns it as it is now.

    Raises:
        LookupError: (local) No such webhook.
        TemplateError: The new template does not parse.
    """
    body = {k: v for k, v in (("template", template), ("description", description), ("enabled", enabled))
            if v is not None}
    if _api_url():
        return dict(_remote(lambda calls: calls.update_webhook(name, body)))
    from plait._store import webhooks

    if template is not None:
        check_webhook_template(name, template)
    found, _changed = webhooks.update_webhook(_db(), name, template=template, description=description,
                                              enabled=enabled)
    return found


def rotate_webhook_token(name: str) -> dict[str, Any]:
    """A new token for the webhook ``name`` (the old one stops working): ``{"webhook", "token"}``.

    Raises:
        LookupError: (local) No such webhook.
    """
    if _api_url():
        return dict(_remote(lambda calls: calls.rotate_webhook(name)))
    from plait._store import webhooks

    found, token = webhooks.rotate_webhook_token(_db(), name)
    return {"webhook": found, "token": token}


def delete_webhook(name: str) -> dict[str, Any]:
    """Delete the webhook ``name``; returns what was deleted.

    Raises:
        LookupError: (local) No such webhook.
    """
    if _api_url():
        return dict(_remote(lambda calls: calls.delete_webhook(name)))
    from plait._store import webhooks

    return webhooks.delete_webhook(_db(), name)


def webhook_url(webhook: Mapping[str, Any]) -> str | None:
    """The full URL of ``webhook`` when the settings name a server (``PLAIT_API_URL``), else
    None (the local store's webhooks are served by ``plait server start`` at their path)."""
    api_url = _api_url()
    if not api_url:
        return None
    from plait._api import normalize_api_url

    return f"{normalize_api_url(api_url)}/v1/webhooks/{webhook['slug']}"

