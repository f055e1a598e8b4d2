"""Taking an automation's actions, in the server, against its store.

``take_action(db, action, context, action_id=...)`` takes one stored action spec: it renders
every string of it with the firing's template context (``plait.automations._templates``),
then calls the store (or the network) directly, as the API routes do:

- ``run-deployment``: a Scheduled run of the deployment, with the idempotency key
  ``automation-action:<action id>``, so an action taken twice (a server restarting between
  taking it and recording that it did) still makes one run;
- ``send-notification``: the saved notification block's ``notify(subject, body)``;
- ``cancel-flow-run`` / ``suspend-flow-run`` / ``resume-flow-run`` /
  ``change-flow-run-state``: run control; suspending parks a run that has not started yet
  (Paused, named "Suspended", so no worker claims it) and resuming such a run schedules it
  again; a run that has started can only be cancelled from outside (or pause itself);
- ``pause-deployment`` / ``resume-deployment`` / ``pause-work-pool`` / ``resume-work-pool``;
- ``call-webhook``: one HTTP request with httpx (header ``X-Plait-Action-Id`` lets the
  receiver drop a repeat; without a body, POST/PUT/PATCH send the JSON of what fired); an
  answer other than 2xx fails the action.

An action whose target is left empty (``deployment: null``...) acts on the triggering flow
run's (its deployment, its work pool, the run itself), else on the triggering event's
resource. Failures raise ``ActionFailed``, whose message names the action and says what to
do, with every secret masked (a webhook URL is shown by its host only: its path and query
often hold the token).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from plait._masking import mask, mask_url
from plait.exceptions import DatabaseError, PlaitError

if TYPE_CHECKING:
    from plait._store.database import Database

__all__ = ["ActionFailed", "take_action"]

T = TypeVar("T")

SUSPENDED = "Suspended"  # the state name of a run a suspend-flow-run action parked
WEBHOOK_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_WEBHOOK_TIMEOUT = 300.0
_REPLY_EXCERPT = 200


class ActionFailed(PlaitError):
    """An automation's action could not be taken (the message names the action type, the
    thing at fault and what to do; secrets are masked).

    Attributes:
        action_type: The action's type (``"run-deployment"``...).
        status: For ``call-webhook``: the HTTP status the URL answered, if it answered.
        retryable: Taking it again later may succeed (the store or the URL did not answer,
            or answered 429 / 5xx); False when the action itself must be fixed.
    """

    def __init__(self, action_type: str, message: str, *, status: int | None = None, retryable: bool = False,
                 extra: tuple[Any, ...] = ()) -> None:
        text = mask(f"{action_type} action: {message}", extra=extra)
        super().__init__(text)
        self.action_type = action_type
        self.status = status
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (self.action_type, str(self), self.status, self.retryable)


def _rebuild(action_type: str, text: str, status: int | None, retryable: bool) -> ActionFailed:
    failed = ActionFailed.__new__(ActionFailed)
    PlaitError.__init__(failed, text)
    failed.action_type, failed.status, failed.retryable = action_type, status, retryable
    return failed


# -- the one entry point ---------------------------------------------------------------------------
def take_action(
    db: Database, action: Mapping[str, Any], context: Mapping[str, Any], *, action_id: str
) -> dict[str, Any]:
    """Take one action of a firing automation.

    Args:
        db: The server's store.
        action: The stored action spec (``{"type": ..., fields...}``), its strings templates.
        context: The firing's template context: ``event``, ``flow_run`` (or None),
            ``automation`` and ``firing``.
        action_id: The recorded action's id (the idempotency key of a run it makes).

    Returns:
        What was done, JSON-ready: ``{"flow_run_id": ...}`` for a run made or controlled,
        ``{"deployment": ...}``, ``{"work_pool": ...}``, ``{"block": ...}`` or
        ``{"status_code": ...}``, with ``"changed": False`` and a ``"reason"`` when there
        was nothing to do (the run had already ended, it was not paused).

    Raises:
        ActionFailed: The action could not be taken (the message says why and what to do).
    """
    kind = str(action.get("type") or "")
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise ActionFailed(kind or "unknown", f"unknown action type {kind!r}; use one of: {', '.join(_HANDLERS)}")
    step = _Step(db, kind, action, context, action_id)
    try:
        return handler(step)
    except ActionFailed:
        raise
    except DatabaseError as exc:
        raise ActionFailed(kind, f"the store did not answer ({exc}); the action was not (or not wholly) taken",
                           retryable=True) from None


class _Step:
    """One action being taken: its rendered fields and the triggering run or resource."""

    def __init__(self, db: Database, kind: str, action: Mapping[str, Any], context: Mapping[str, Any],
                 action_id: str) -> None:
        self.db, self.kind, self.action, self.action_id = db, kind, action, action_id
        # `{{ secret("name") }}`: a saved secret block's value, so an action's credentials live
        # encrypted in a block, never in the automation itself
        self.context = {**context, "secret": self._secret}
        automation = context.get("automation") or {}
        self.automation = str(automation.get("name") or automation.get("id") or "?")

    def fail(self, message: str, **options: Any) -> ActionFailed:
        return ActionFailed(self.kind, message, **options)

    def _secret(self, name: Any) -> str:
        from plait._masking import register_secret
        from plait.blocks._documents import read_document
        from plait.blocks._payloads import block_from_document
        from plait.exceptions import BlockNotFound

        if not isinstance(name, str) or not name.strip():
            raise self.fail("secret() takes the name of a saved secret block, e.g. {{ secret('slack-token') }}")
        try:
            block = block_from_document(read_document(self.db, "secret", name.strip(), include_secrets=True))
        except BlockNotFound:
            raise self.fail(f"no saved secret block {name!r}: save it with `plait block create secret {name} "
                            "--set value=...`") from None
        read = getattr(block, "get", None)
        value = str(read()) if callable(read) else ""
        register_secret(value)  # masked wherever it might show up (errors, results)
        return value

    def _what(self, field: str) -> str:
        return f"the template of field {field!r} (automation {self.automation!r})"

    def value(self, field: str, default: Any = None) -> Any:
        """The field with its templates rendered (a lone ``{{ expression }}`` keeps its type)."""
        raw = self.action.get(field, default)
        if raw is None:
            return default
        from plait.automations._templates import TemplateError, render_value

        try:
            return render_value(raw, self.context, what=self._what(field))
        except TemplateError as exc:
            raise self.fail(f"{exc}; fix the template in the automation's actions") from None

    def text(self, field: str, default: str | None = None) -> str | None:
        """The field rendered as text (None or blank: ``default``)."""
        return self.render_text(self.action.get(field), self._what(field), default)

    def render_text(self, raw: Any, what: str, default: str | None = None) -> str | None:
        """``raw`` (a template, or a value given as it is) rendered as text."""
        if raw is None:
            return default
        if not isinstance(raw, str):
            return _as_text(raw)
        from plait.automations._templates import TemplateError, render_text

        try:
            rendered = render_text(raw, self.context, what=what)
        except TemplateError as exc:
            raise self.fail(f"{exc}; fix the template in the automation's actions") from None
        return rendered if rendered.strip() else default

    def name(self, field: str) -> str | None:
        """A rendered reference (an id, ``flow/name``, a pool's name), stripped; None if empty."""
        found = self.text(field)
        return found.strip() if found is not None and found.strip() else None

    # -- what the firing is about --------------------------------------------------------------
    def flow_run(self) -> Mapping[str, Any]:
        found = self.context.get("flow_run")
        return found if isinstance(found, Mapping) else {}

    def event(self) -> Mapping[str, Any]:
        found = self.context.get("event")
        return found if isinstance(found, Mapping) else {}

    def event_resource(self, prefix: str) -> str | None:
        """The triggering event's resource id after ``prefix`` (``"flow-run/"``), if it has one."""
        resource = self.event().get("resource")
        if isinstance(resource, Mapping):
            resource = resource.get("id")
        if isinstance(resource, str) and resource.startswith(prefix) and len(resource) > len(prefix):
            return resource[len(prefix):]
        return None

    def store(self, call: Callable[[], T], *, missing: str, refused: str = "{message}") -> T:
        """``call()`` with the store's refusals as ``ActionFailed``: a LookupError says
        ``missing``, a ValueError ``refused`` (``{message}`` stands for the store's words)."""
        try:
            return call()
        except LookupError as exc:
            raise self.fail(missing.format(message=_plain(exc))) from None
        except ValueError as exc:
            raise self.fail(refused.format(message=_plain(exc))) from None


def _plain(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return text.rstrip(".")


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _masked(value: Any) -> Any:
    """A JSON value with the secrets plait knows masked in its strings (for results)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# -- run-deployment --------------------------------------------------------------------------------
def _deployment(step: _Step) -> dict[str, Any]:
    """The deployment the action names, else the triggering run's, else the event's."""
    from plait._store.deployments import get_deployment

    ref = step.name("deployment")
    origin = "the action's deployment"
    if ref is None:
        run = step.flow_run()
        ref = run.get("deployment_id") or run.get("deployment") or step.event_resource("deployment/")
        origin = "the triggering flow run's deployment"
        if not ref:
            raise step.fail(
                f"it names no deployment and the triggering event ({step.event().get('kind') or 'unknown'}) is not "
                "about a run of a deployment; give the action `deployment: flow_name/deployment_name`"
            )
    found = step.store(lambda: get_deployment(step.db, str(ref)), missing="{message}",
                       refused=f"{origin} {ref!r} is not 'flow_name/deployment_name' nor an id; fix the action")
    if found is None:
        raise step.fail(f"deployment {ref!r} does not exist: check the automation's {step.kind} action "
                        "(`plait deployment ls` lists deployments)")
    return found


def _label(deployment: Mapping[str, Any]) -> str:
    return f"{deployment.get('flow_name')}/{deployment.get('name')}"


def _object(step: _Step, field: str) -> dict[str, Any]:
    value = step.value(field, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise step.fail(f"field {field!r} must render to an object (a mapping of names to values), not "
                        f"{type(value).__name__}; fix the action")
    return {str(k): v for k, v in value.items()}


def _tags(step: _Step) -> list[str]:
    value = step.value("tags", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) and t.strip() for t in value):
        raise step.fail("field 'tags' must render to a list of non-empty texts; fix the action")
    return list(dict.fromkeys(t.strip() for t in value))


def _run_deployment(step: _Step) -> dict[str, Any]:
    from plait._store.automations import ACTION_KEY_PREFIX
    from plait._store.scheduling import create_flow_run
    from plait.deployments._control import check_run_parameters

    deployment = _deployment(step)
    label = _label(deployment)
    parameters = _object(step, "parameters")
    job_variables = _object(step, "job_variables") if step.action.get("job_variables") is not None else None
    tags = _tags(step)
    try:
        check_run_parameters(deployment, parameters)
    except ValueError as exc:
        raise step.fail(f"{_plain(exc)}; fix the action's parameters") from None
    key = f"{ACTION_KEY_PREFIX}{step.action_id}"
    row, created = step.store(
        lambda: create_flow_run(step.db, deployment, parameters=parameters, expected_start_time=datetime.now(UTC),
                                idempotency_key=key, tags=tags or None, job_variables=job_variables),
        missing=f"deployment {label!r} does not exist any more: check the automation's run-deployment action",
        refused=f"deployment {label!r} refused the run: {{message}}; fix the action's parameters or job_variables",
    )
    return {"flow_run_id": row["id"], "flow_run_name": row.get("name"), "deployment": label,
            "deployment_id": deployment["id"], "parameters": _masked(row.get("parameters") or {}),
            "new": bool(created)}


# -- send-notification -----------------------------------------------------------------------------
def _default_subject(step: _Step) -> str:
    return f"plait: automation {step.automation!r} fired on {step.event().get('kind') or 'an event'}"


def _default_body(step: _Step) -> str:
    event = step.event()
    lines = [f"Automation {step.automation!r} fired.", "",
             f"Event: {event.get('kind')} at {event.get('occurred')}"]
    resource = event.get("resource")
    if isinstance(resource, Mapping):
        resource = resource.get("id")
    if resource:
        lines.append(f"Resource: {resource}")
    run = step.flow_run()
    if run.get("id"):
        lines += [f"Flow run: {run.get('name')} of flow {run.get('flow_name')} ({run.get('state_name')})",
                  "", "Inspect it with:", f"    plait flow-run inspect {run['id']}"]
    return "\n".join(lines)


def _send_notification(step: _Step) -> dict[str, Any]:
    from plait.blocks._documents import read_document
    from plait.blocks._payloads import block_from_document
    from plait.exceptions import BlockError, BlockNotFound

    reference = step.name("block")
    slug, _, name = (reference or "").partition("/")
    if not slug or not name:
        raise step.fail(f"give the notification block as 'slug/name' (e.g. 'slack-webhook/ops'), not "
                        f"{reference!r}; `plait block ls` lists saved blocks")
    try:
        block = block_from_document(read_document(step.db, slug, name, include_secrets=True))
    except BlockNotFound as exc:
        raise step.fail(f"{_plain(exc)}; save the block or fix the action's block") from None
    except DatabaseError:
        raise
    except (BlockError, ValueError) as exc:
        raise step.fail(f"block {reference!r} cannot be loaded: {_plain(exc)}", extra=(exc,)) from None
    notify = getattr(block, "notify", None)
    capabilities = tuple(getattr(type(block), "capabilities", ()) or ())
    if "notify" not in capabilities or not callable(notify):
        raise step.fail(f"block {reference!r} cannot send notifications (its type {slug!r} lacks the 'notify' "
                        "capability); give a webhook, slack-webhook or email block (`plait block types`)")
    subject = step.text("subject") or _default_subject(step)
    body = step.text("body") or _default_body(step)
    try:
        notify(subject, body)
    except Exception as exc:  # a block's delivery: whatever it raises is its failure to deliver
        reason = _plain(exc) or type(exc).__name__
        raise step.fail(f"block {reference!r} could not deliver: {reason}", retryable=True, extra=(block,)) from None
    return {"block": f"{slug}/{name}", "subject": mask(subject, extra=[block])}


# -- flow run control ------------------------------------------------------------------------------
def _flow_run_id(step: _Step) -> str:
    given = step.name("flow_run_id")
    if given:
        return given
    found = step.flow_run().get("id") or step.event_resource("flow-run/")
    labels = step.event().get("labels")
    if not found and isinstance(labels, Mapping):
        found = labels.get("flow_run_id")
    if not found:
        raise step.fail(f"it names no flow run and the triggering event ({step.event().get('kind') or 'unknown'}) "
                        "is not about one; give the action `flow_run_id`")
    return str(found)


def _run_state(step: _Step, flow_run_id: str) -> dict[str, Any]:
    from plait._store.control import pause_status

    return step.store(lambda: pause_status(step.db, flow_run_id),
                      missing=f"flow run {flow_run_id!r} does not exist: check the action's flow_run_id "
                              "(`plait flow-run ls` lists runs)")


def _unchanged(flow_run_id: str, state: Mapping[str, Any], reason: str) -> dict[str, Any]:
    return {"flow_run_id": flow_run_id, "state_type": state["state_type"], "state_name": state["state_name"],
            "changed": False, "reason": reason}


def _is_final(state_type: str) -> bool:
    from plait.states import StateType

    try:
        return StateType(state_type).is_final
    except ValueError:
        return False


def _cancel_flow_run(step: _Step) -> dict[str, Any]:
    from plait._store.scheduling import request_cancel

    flow_run_id = _flow_run_id(step)
    state = _run_state(step, flow_run_id)
    if _is_final(state["state_type"]):
        return _unchanged(flow_run_id, state, f"it had already ended ({state['state_name']})")
    now = step.store(lambda: request_cancel(step.db, flow_run_id),
                     missing=f"flow run {flow_run_id!r} does not exist: check the action's flow_run_id",
                     refused=f"flow run {flow_run_id!r} cannot be cancelled: {{message}}")
    return {"flow_run_id": flow_run_id, "state_type": str(getattr(now, "value", now)), "changed": True}


def _suspend_flow_run(step: _Step) -> dict[str, Any]:
    from plait._store.scheduling import set_flow_run_state
    from plait.states import IllegalTransition

    flow_run_id = _flow_run_id(step)
    state = _run_state(step, flow_run_id)
    current = state["state_type"]
    if current == "PAUSED":
        return _unchanged(flow_run_id, state, "it is paused already")
    if _is_final(current):
        return _unchanged(flow_run_id, state, f"it had already ended ({state['state_name']})")
    if current != "SCHEDULED":
        raise step.fail(
            f"flow run {flow_run_id!r} is {state['state_name']}: a run that has started cannot be suspended from "
            "outside (its process holds it); cancel it with a cancel-flow-run action, or let the flow pause itself "
            "with pause_flow_run()")
    message = f"suspended by automation {step.automation!r}; resume it with `plait flow-run resume {flow_run_id}`"
    try:
        step.store(lambda: set_flow_run_state(step.db, flow_run_id, "PAUSED", SUSPENDED, message),
                   missing=f"flow run {flow_run_id!r} does not exist: check the action's flow_run_id")
    except IllegalTransition:
        now = _run_state(step, flow_run_id)
        raise step.fail(f"flow run {flow_run_id!r} started meanwhile ({now['state_name']}) and cannot be suspended "
                        "any more; cancel it with a cancel-flow-run action") from None
    return {"flow_run_id": flow_run_id, "state_type": "PAUSED", "state_name": SUSPENDED, "changed": True}


def _resume_flow_run(step: _Step) -> dict[str, Any]:
    from plait._store.control import resume_flow_run
    from plait._store.scheduling import set_flow_run_state
    from plait.states import IllegalTransition

    flow_run_id = _flow_run_id(step)
    state = _run_state(step, flow_run_id)
    if state["state_type"] != "PAUSED":
        return _unchanged(flow_run_id, state, f"it is not paused ({state['state_name']})")
    missing = f"flow run {flow_run_id!r} does not exist: check the action's flow_run_id"
    if state["state_name"] == SUSPENDED:
        # parked before it started: nothing waits for it, so it is scheduled again (a Paused run
        # may become Pending, and a Pending one Scheduled)
        message = f"resumed by automation {step.automation!r}"
        try:
            step.store(lambda: set_flow_run_state(step.db, flow_run_id, "PENDING", "Resuming", message),
                       missing=missing)
            step.store(lambda: set_flow_run_state(step.db, flow_run_id, "SCHEDULED", "Scheduled", message),
                       missing=missing)
        except IllegalTransition as exc:
            raise step.fail(f"flow run {flow_run_id!r} changed while it was resumed ({exc}); look at it with "
                            f"`plait flow-run inspect {flow_run_id}`") from None
        return {"flow_run_id": flow_run_id, "state_type": "SCHEDULED", "state_name": "Scheduled", "changed": True}
    row = step.store(lambda: resume_flow_run(step.db, flow_run_id, None), missing=missing,
                     refused=f"flow run {flow_run_id!r} cannot be resumed: {{message}} (a run waiting for input is "
                             f"resumed with `plait flow-run resume {flow_run_id} --input ...`)")
    return {"flow_run_id": flow_run_id, "state_type": row["state_type"], "state_name": row["state_name"],
            "changed": True}


def _change_flow_run_state(step: _Step) -> dict[str, Any]:
    from plait._store.scheduling import set_flow_run_state
    from plait.states import IllegalTransition, StateType

    flow_run_id = _flow_run_id(step)
    wanted = (step.name("state") or "").upper()
    names = [t.value for t in StateType]
    if wanted not in names:
        raise step.fail(f"state {wanted or None!r} is not a state type; use one of: {', '.join(names)}")
    name = step.name("name") or StateType(wanted).title
    message = step.text("message") or f"set by automation {step.automation!r}"
    try:
        step.store(lambda: set_flow_run_state(step.db, flow_run_id, wanted, name, mask(message)),
                   missing=f"flow run {flow_run_id!r} does not exist: check the action's flow_run_id "
                           "(`plait flow-run ls` lists runs)")
    except IllegalTransition as exc:
        raise step.fail(f"{exc}; change the action's state, or its trigger so that it fires on runs in a state "
                        f"that may become {StateType(wanted).title}") from None
    return {"flow_run_id": flow_run_id, "state_type": wanted, "state_name": name, "changed": True}


# -- deployments and work pools --------------------------------------------------------------------
def _set_deployment_paused(paused: bool) -> Callable[[_Step], dict[str, Any]]:
    def handler(step: _Step) -> dict[str, Any]:
        from plait._store.deployments import set_deployment_paused

        deployment = _deployment(step)
        label = _label(deployment)
        row = step.store(lambda: set_deployment_paused(step.db, deployment["id"], paused),
                         missing=f"deployment {label!r} does not exist any more: check the automation's "
                                 f"{step.kind} action")
        return {"deployment": label, "deployment_id": row["id"], "paused": bool(row["paused"]),
                "changed": bool(deployment.get("paused")) != paused}

    return handler


def _set_work_pool_paused(paused: bool) -> Callable[[_Step], dict[str, Any]]:
    def handler(step: _Step) -> dict[str, Any]:
        from plait._store.work_pools import get_work_pool, set_work_pool_paused

        name = step.name("work_pool") or step.flow_run().get("work_pool") or step.event_resource("work-pool/")
        if not name:
            raise step.fail(f"it names no work pool and the triggering event ({step.event().get('kind') or 'unknown'})"
                            " is not about a run of one; give the action `work_pool`")
        pool = str(name)
        missing = f"work pool {pool!r} does not exist: check the automation's {step.kind} action " \
                  "(`plait work-pool ls` lists pools)"
        before = get_work_pool(step.db, pool)
        if before is None:
            raise step.fail(missing)
        if bool(before.get("paused")) == paused:  # nothing to do: no event either
            return {"work_pool": pool, "paused": paused, "changed": False}
        row = step.store(lambda: set_work_pool_paused(step.db, pool, paused), missing=missing)
        return {"work_pool": pool, "paused": bool(row["paused"]), "changed": True}

    return handler


# -- call-webhook ----------------------------------------------------------------------------------
def _origin(url: str) -> str:
    """The URL as messages show it: scheme, host and port (its path and query may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    where = f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"
    return f"{where}/…" if (parts.path not in ("", "/") or parts.query) else where


def _secrets_of(url: str, headers: Mapping[str, str]) -> tuple[str, ...]:
    """The call's own secrets for masking: the URL, the pieces of its path and query, header values."""
    parts = urlsplit(url)
    pieces = [p for p in parts.path.split("/") + parts.query.replace("&", "=").split("=") if len(p) >= 6]
    return (url, mask_url(url), *pieces, *(v for v in headers.values() if len(v) >= 4))


def _webhook_request(step: _Step) -> tuple[str, str, dict[str, str], bytes | None, float]:
    url = step.name("url")
    if not url:
        raise step.fail("it has no url; give the action `url: https://...`")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # the URL is not quoted: it may hold a token
        raise step.fail("its url must be an http:// or https:// URL with a host; fix the action", extra=(url,))
    method = (step.name("method") or "POST").upper()
    if method not in WEBHOOK_METHODS:
        raise step.fail(f"method {method!r} is not one of {', '.join(WEBHOOK_METHODS)}; fix the action")
    raw_headers = step.action.get("headers") or {}
    if not isinstance(raw_headers, Mapping):
        raise step.fail("field 'headers' must be a mapping of header names to texts; fix the action")
    headers: dict[str, str] = {}
    for key, raw in raw_headers.items():
        rendered = step.render_text(raw, f"the template of header {str(key)!r} (automation {step.automation!r})",
                                    "") or ""
        if any(c in rendered for c in "\r\n") or any(c in str(key) for c in "\r\n:"):
            raise step.fail(f"header {str(key)!r} holds a line break or a colon; fix the action's headers",
                            extra=(rendered,))
        headers[str(key)] = rendered
    timeout = step.action.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_WEBHOOK_TIMEOUT:
        raise step.fail(f"timeout must be a number of seconds above 0 and at most {MAX_WEBHOOK_TIMEOUT:g}, "
                        f"not {timeout!r}; fix the action")
    content: bytes | None = None
    if step.action.get("body") is not None:
        content = (step.text("body", "") or "").encode()
    elif method in ("POST", "PUT", "PATCH"):
        # no body given: what fired, as JSON (the context the templates see)
        content = json.dumps(_masked({k: step.context.get(k) for k in ("automation", "firing", "event", "flow_run")}),
                             default=str).encode()
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    return url, method, headers, content, float(timeout)


def _reply_excerpt(text: str, secrets: tuple[str, ...]) -> str:
    text = " ".join(text.split())[:_REPLY_EXCERPT]
    return f": {mask(text, extra=secrets)}" if text else ""


_http: list[Any] = []  # one client for every call: building one loads the CA bundle (~35 ms)
_http_lock = threading.Lock()


def _client() -> Any:
    import httpx

    with _http_lock:
        if not _http:
            _http.append(httpx.Client(follow_redirects=False, limits=httpx.Limits(max_connections=20)))
        return _http[0]


def _call_webhook(step: _Step) -> dict[str, Any]:
    import httpx

    from plait import __version__

    url, method, headers, content, timeout = _webhook_request(step)
    secrets = _secrets_of(url, headers)
    where = _origin(url)
    sent = {"User-Agent": f"plait/{__version__} (automation)", "X-Plait-Action-Id": step.action_id, **headers}
    try:
        response = _client().request(method, url, content=content, headers=sent, timeout=timeout)
    except httpx.HTTPError as exc:
        reason = str(exc).replace(url, where) or "no details"
        raise step.fail(f"{method} {where} failed: {type(exc).__name__}: {reason}; check that the URL is right and "
                        "answers", retryable=True, extra=secrets) from None
    status = response.status_code
    if not 200 <= status < 300:
        raise step.fail(
            f"{method} {where} answered HTTP {status} {response.reason_phrase}{_reply_excerpt(response.text, secrets)}"
            "; check the action's url, headers and body", status=status,
            retryable=status == 429 or status >= 500, extra=secrets)
    return {"url": where, "method": method, "status_code": status}


_HANDLERS: dict[str, Callable[[_Step], dict[str, Any]]] = {
    "run-deployment": _run_deployment,
    "send-notification": _send_notification,
    "cancel-flow-run": _cancel_flow_run,
    "suspend-flow-run": _suspend_flow_run,
    "resume-flow-run": _resume_flow_run,
    "change-flow-run-state": _change_flow_run_state,
    "pause-deployment": _set_deployment_paused(True),
    "resume-deployment": _set_deployment_paused(False),
    "pause-work-pool": _set_work_pool_paused(True),
    "resume-work-pool": _set_work_pool_paused(False),
    "call-webhook": _call_webhook,
}
