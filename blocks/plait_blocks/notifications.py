"""Notification blocks: a generic webhook, a Slack incoming webhook, and email over SMTP.

Each block has ``notify(subject, body)`` for a message of your own and
``notify_event(event)`` for a flow run state change (a ``plait.plugins.StateChangeEvent``),
which is what notification rules deliver. A failed delivery raises ``DeliveryError``, whose
message names the host and the reason but never a webhook URL's path or query (those often
hold the token).
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from plait import PlaitError, mask_secrets  # the one masking function
from plait.blocks import NotificationBlock, SecretDict

__all__ = [
    "DeliveryError",
    "Webhook",
    "SlackWebhook",
    "Email",
    "render_event",
    "event_fields",
    "deliver_event",
    "TEMPLATE_FIELDS",
]

EVENT_FIELDS = (
    "flow_name",
    "flow_run_name",
    "flow_run_id",
    "state_name",
    "state_type",
    "state_message",
    "timestamp",
)
TEMPLATE_FIELDS = ("subject", "body", *EVENT_FIELDS, "tags")
"""Names a ``Webhook.body_template`` may use: ``{subject}``, ``{flow_name}``…"""

# Notification blocks hold tokens in URLs and passwords: never echo inputs in errors.
_SECRET_SAFE = ConfigDict(hide_input_in_errors=True)


class DeliveryError(PlaitError):
    """A notification could not be delivered (the message says where and why, without secrets)."""


# -- rendering events ----------------------------------------------------------------------
def render_event(event: Any) -> tuple[str, str]:
    """Subject and body describing a flow run state change."""
    subject = f"plait: flow {event.flow_name!r} run {event.flow_run_name!r} is {event.state_name}"
    lines = [
        f"Flow run {event.flow_run_name!r} of flow {event.flow_name!r} entered state "
        f"{event.state_name} at {event.timestamp}.",
        "",
    ]
    if event.state_message:
        lines += [f"Message: {event.state_message}", ""]
    lines.append(f"Flow run id: {event.flow_run_id}")
    if event.tags:
        lines.append(f"Tags: {', '.join(event.tags)}")
    lines += ["", "Inspect it with:", f"    plait flow-run inspect {event.flow_run_id}"]
    return subject, "\n".join(lines)


def event_fields(event: Any) -> dict[str, str]:
    """The event's fields as text, for templates (tags comma-separated)."""
    fields = {name: str(getattr(event, name, "") or "") for name in EVENT_FIELDS}
    fields["tags"] = ", ".join(getattr(event, "tags", ()) or ())
    return fields


def deliver_event(block: Any, event: Any) -> None:
    """Deliver ``event`` with any notification block: its ``notify_event`` if it has one,
    else ``notify(subject, body)`` with the standard rendering."""
    notify_event = getattr(block, "notify_event", None)
    if callable(notify_event):
        notify_event(event)
    else:
        block.notify(*render_event(event))


# -- HTTP ----------------------------------------------------------------------------------
def _check_http_url(value: SecretStr) -> SecretStr:
    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Deliberately not quoting the URL: it may hold a token.
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def _short_reply(text: str, url: str) -> str:
    """A short, token-free excerpt of an error reply (Slack answers e.g. ``invalid_token``):
    dropped when masking would change it, i.e. when it quotes the URL or a piece of its path."""
    text = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9_ .,:-]{1,80}", text):
        return ""
    parts = urlsplit(url)
    pieces = [p for p in re.split(r"[/?&=#]", parts.path + "?" + parts.query) if len(p) >= 4]
    if mask_secrets(text, extra=[url, *pieces]) != text:
        return ""
    return f": {text}"


def _http_send(kind: str, method: str, url: str, content: bytes, headers: dict[str, str], timeout: float) -> None:
    import httpx

    from plait import __version__

    host = _host(url)
    sent_headers = {"User-Agent": f"plait/{__version__}", **headers}
    try:
        response = httpx.request(method, url, content=content, headers=sent_headers, timeout=timeout)
    except httpx.HTTPError as exc:
        reason = mask_secrets(str(exc).replace(url, host), extra=(url,)) or "no details"
        raise DeliveryError(f"{kind} to {host} failed: {type(exc).__name__}: {reason}") from None
    if not response.is_success:
        raise DeliveryError(
            f"{kind} to {host} answered HTTP {response.status_code} {response.reason_phrase}"
            f"{_short_reply(response.text, url)}"
        )


# -- Webhook -------------------------------------------------------------------------------
class Webhook(NotificationBlock):
    """Sends notifications as HTTP requests to a URL you choose.

    By default the body is JSON: ``{"subject": ..., "body": ...}``, plus the event's fields
    (``flow_name``, ``state_type``…) when a flow run state change is delivered. Set
    ``body_template`` to send anything else: it is formatted with Python's ``str.format``
    and the fields ``subject``, ``body``, ``flow_name``, ``flow_run_name``, ``flow_run_id``,
    ``state_name``, ``state_type``, ``state_message``, ``timestamp`` and ``tags`` (literal
    braces are written ``{{`` and ``}}``; values are inserted as they are).
    """

    model_config = _SECRET_SAFE
    block_type_slug: ClassVar[str] = "webhook"
    block_type_name: ClassVar[str] = "Webhook"
    capabilities: ClassVar[tuple[str, ...]] = ("notify",)
    code_example: ClassVar[str] = """\
from plait_blocks import Webhook

Webhook(
    url="https://hooks.example.com/services/T0K3N",
    headers={"Authorization": "Bearer s3cr3t"},
).save("ops")

Webhook.load("ops").notify("Backfill done", "Loaded 1,204 rows into orders.")
"""

    url: SecretStr = Field(description="Where to send; secret because webhook URLs usually embed a token.")
    method: Literal["POST", "PUT"] = Field(default="POST", description="HTTP method: POST or PUT.")
    headers: SecretDict | None = Field(
        default=None, description="Extra request headers, such as Authorization; kept secret."
    )
    body_template: str | None = Field(
        default=None,
        description="str.format template of the request body; default: a JSON object with subject and body.",
    )
    content_type: str = Field(default="application/json", description="Content-Type header of the request.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Seconds to wait for the server to answer.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        return _check_http_url(value)

    @field_validator("body_template")
    @classmethod
    def _template_uses_known_fields(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.format(**{name: "" for name in TEMPLATE_FIELDS})
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                raise ValueError(
                    f"body_template cannot be rendered ({type(exc).__name__}: {exc}); use the fields "
                    f"{', '.join('{' + n + '}' for n in TEMPLATE_FIELDS)} and write literal braces as {{{{ }}}}"
                ) from None
        return value

    def render_body(self, subject: str, body: str, event: Any | None = None) -> bytes:
        """The request body for a message (and the state change it describes, if any)."""
        if self.body_template is None:
            payload: dict[str, Any] = {"subject": subject, "body": body}
            if event is not None:
                payload.update({name: getattr(event, name) for name in EVENT_FIELDS})
                payload["tags"] = list(event.tags)
            return json.dumps(payload).encode()
        fields = {name: "" for name in TEMPLATE_FIELDS}
        if event is not None:
            fields.update(event_fields(event))
        fields.update(subject=subject, body=body)
        return self.body_template.format(**fields).encode()

    def notify(self, subject: str, body: str) -> None:
        """Send one message; DeliveryError when the server cannot be reached or answers non-2xx."""
        self._send(self.render_body(subject, body))

    def notify_event(self, event: Any) -> None:
        """Send a flow run state change."""
        self._send(self.render_body(*render_event(event), event=event))

    def _send(self, content: bytes) -> None:
        headers = {"Content-Type": self.content_type}
        if self.headers is not None:
            headers.update({str(k): str(v) for k, v in self.headers.get_secret_value().items()})
        _http_send("webhook", self.method, self.url.get_secret_value(), content, headers, self.timeout_seconds)


# -- Slack -----------------------------------------------------------------------------------
def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackWebhook(NotificationBlock):
    """Posts notifications to a Slack channel through an incoming webhook.

    The message is ``*subject*`` followed by the body; with ``use_blocks`` it is also laid
    out with Block Kit (a header and a section), and the text is kept as the fallback.
    """

    model_config = _SECRET_SAFE
    block_type_slug: ClassVar[str] = "slack-webhook"
    block_type_name: ClassVar[str] = "Slack Webhook"
    capabilities: ClassVar[tuple[str, ...]] = ("notify",)
    code_example: ClassVar[str] = """\
from plait_blocks import SlackWebhook

SlackWebhook(url="https://hooks.slack.com/services/T000/B000/XXXX").save("alerts")

SlackWebhook.load("alerts").notify("Nightly ETL failed", "See `plait flow-run ls --state FAILED`.")
"""

    url: SecretStr = Field(description="The incoming webhook URL Slack gave you (it is the credential).")
    use_blocks: bool = Field(default=False, description="Also send a Block Kit layout (header + section).")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Seconds to wait for Slack to answer.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        return _check_http_url(value)

    def payload(self, subject: str, body: str) -> dict[str, Any]:
        """The JSON Slack receives."""
        text = f"*{_slack_escape(subject)}*\n{_slack_escape(body)}"
        payload: dict[str, Any] = {"text": text}
        if self.use_blocks:
            payload["blocks"] = [
                {"type": "header", "text": {"type": "plain_text", "text": subject[:150] or " "}},
                {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(body)[:3000] or " "}},
            ]
        return payload

    def notify(self, subject: str, body: str) -> None:
        """Post one message; DeliveryError when Slack cannot be reached or refuses it."""
        content = json.dumps(self.payload(subject, body)).encode()
        _http_send(
            "Slack webhook", "POST", self.url.get_secret_value(), content,
            {"Content-Type": "application/json"}, self.timeout_seconds,
        )

    def notify_event(self, event: Any) -> None:
        """Post a flow run state change."""
        self.notify(*render_event(event))


# -- Email -------------------------------------------------------------------------------------
_PORTS = {"ssl": 465, "starttls": 587, "plain": 25}


def _check_address(address: str) -> str:
    address = address.strip()
    if "@" not in address or any(c in address for c in "\r\n,"):
        raise ValueError(f"{address!r} is not one email address")
    return address


class Email(NotificationBlock):
    """Sends notifications as plain-text email through an SMTP server.

    STARTTLS is used by default (port 587); set ``use_ssl`` for implicit TLS (port 465), or
    turn both off for a local relay (port 25). Logs in when ``username`` is set.
    """

    model_config = _SECRET_SAFE
    block_type_slug: ClassVar[str] = "email"
    block_type_name: ClassVar[str] = "Email"
    capabilities: ClassVar[tuple[str, ...]] = ("notify",)
    code_example: ClassVar[str] = """\
from plait_blocks import Email

Email(
    smtp_host="smtp.example.com",
    username="alerts@example.com",
    password="app-password",
    from_address="alerts@example.com",
    to_addresses=["oncall@example.com"],
    subject_prefix="[plait] ",
).save("oncall")

Email.load("oncall").notify("Backfill done", "Loaded 1,204 rows into orders.")
"""

    smtp_host: str = Field(description="Host name of the SMTP server.", min_length=1)
    smtp_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Port of the SMTP server; default 465 with use_ssl, 587 with use_starttls, else 25.",
    )
    username: str | None = Field(default=None, description="User to log in as; no login when empty.")
    password: SecretStr | None = Field(default=None, description="Password (or app password) of username.")
    use_starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS before sending.")
    use_ssl: bool = Field(default=False, description="Connect with implicit TLS (SMTPS) instead of STARTTLS.")
    from_address: str = Field(description="Sender address, e.g. alerts@example.com.")
    to_addresses: list[str] = Field(min_length=1, description="Recipient addresses.")
    subject_prefix: str = Field(default="", description="Text put before every subject, e.g. '[plait] '.")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Seconds to wait on the SMTP server.")

    @field_validator("from_address")
    @classmethod
    def _one_sender(cls, value: str) -> str:
        return _check_address(value)

    @field_validator("to_addresses")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return [_check_address(address) for address in value]

    @model_validator(mode="after")
    def _consistent(self) -> Email:
        if self.use_ssl and self.use_starttls:
            raise ValueError("use_ssl and use_starttls exclude each other: set use_starttls=False with use_ssl")
        if self.password is not None and not self.username:
            raise ValueError("a password needs a username")
        return self

    @property
    def port(self) -> int:
        """The port actually used."""
        if self.smtp_port:
            return self.smtp_port
        return _PORTS["ssl" if self.use_ssl else "starttls" if self.use_starttls else "plain"]

    def message(self, subject: str, body: str) -> Any:
        """The ``email.message.EmailMessage`` that ``notify`` sends."""
        from email.message import EmailMessage
        from email.utils import formatdate, make_msgid

        message = EmailMessage()
        message["Subject"] = " ".join(f"{self.subject_prefix}{subject}".splitlines())
        message["From"] = self.from_address
        message["To"] = ", ".join(self.to_addresses)
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=self.from_address.rpartition("@")[2] or None)
        message.set_content(body)
        return message

    def notify(self, subject: str, body: str) -> None:
        """Send one email; DeliveryError when the server cannot be reached or refuses it."""
        import smtplib
        import ssl

        message = self.message(subject, body)
        where = f"{self.smtp_host}:{self.port}"
        try:
            context = ssl.create_default_context() if (self.use_ssl or self.use_starttls) else None
            if self.use_ssl:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.smtp_host, self.port, timeout=self.timeout_seconds, context=context
                )
            else:
                client = smtplib.SMTP(self.smtp_host, self.port, timeout=self.timeout_seconds)
            with client:
                if self.use_starttls:
                    client.starttls(context=context)
                if self.username:
                    password = self.password.get_secret_value() if self.password else ""
                    client.login(self.username, password)
                refused = client.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            reason = mask_secrets(f"{type(exc).__name__}: {exc}", extra=[self])
            raise DeliveryError(f"email via {where} failed: {reason}") from None
        if refused:
            raise DeliveryError(
                f"email via {where} was refused for {', '.join(sorted(refused))} "
                f"(delivered to the other {len(self.to_addresses) - len(refused)})"
            )

    def notify_event(self, event: Any) -> None:
        """Email a flow run state change."""
        self.notify(*render_event(event))
