"""``plait webhook create | ls | inspect | rotate | enable | disable | delete``.

Each command wraps a plain function of this module that returns JSON-friendly data
(``webhook_create``, ``webhook_ls``, ...); tests and scripts call those directly. They go
through ``plait.automations._webhooks``: to the server ``PLAIT_API_URL`` names, or to the
local store (whose webhooks ``plait server start`` serves).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from plait.cli._app import CliError, PlaitGroup, json_option

__all__ = [
    "webhook_create", "webhook_ls", "webhook_inspect", "webhook_rotate", "webhook_enable", "webhook_disable",
    "webhook_delete", "webhook_group",
]


def _api() -> Any:
    from plait.automations import _webhooks

    return _webhooks


def _with_url(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` (``{webhook, token, ...}``) with ``url``: the full URL when a server is
    configured, else None (the path is served by ``plait server start``)."""
    webhook = answer["webhook"]
    return {**answer, "path": webhook.get("path"), "url": _api().webhook_url(webhook)}


# -- the functions ----------------------------------------------------------------------------------
def webhook_create(name: str, *, template: str | None = None, description: str = "",
                   enabled: bool = True) -> dict[str, Any]:
    """Create a webhook: ``{webhook, token, path, url}`` (the token is shown this once).

    Raises:
        ValueError: The name is taken or malformed, or the template does not parse (the
            message names the line and column).
    """
    return _with_url(_api().create_webhook(name, template, description=description, enabled=enabled))


def webhook_ls() -> list[dict[str, Any]]:
    """Every webhook by name."""
    return list(_api().list_webhooks())


def webhook_inspect(name: str) -> dict[str, Any]:
    """One webhook, with ``url`` (None without a configured server).

    Raises:
        LookupError: No such webhook.
    """
    found = dict(_api().get_webhook(name))
    found["url"] = _api().webhook_url(found)
    return found


def webhook_rotate(name: str) -> dict[str, Any]:
    """A new token for the webhook (the old one stops working): ``{webhook, token, path, url}``.

    Raises:
        LookupError: No such webhook.
    """
    return _with_url(_api().rotate_webhook_token(name))


def webhook_enable(name: str) -> dict[str, Any]:
    """Enable the webhook (its URL makes events again); returns it."""
    return dict(_api().update_webhook(name, enabled=True))


def webhook_disable(name: str) -> dict[str, Any]:
    """Disable the webhook (its URL answers 404, its token is kept); returns it."""
    return dict(_api().update_webhook(name, enabled=False))


def webhook_delete(name: str) -> dict[str, Any]:
    """Delete the webhook; returns what was deleted.

    Raises:
        LookupError: No such webhook.
    """
    return dict(_api().delete_webhook(name))


# -- rendering ----------------------------------------------------------------------------------------
def _where(answer: dict[str, Any]) -> tuple[str, str]:
    if answer.get("url"):
        return "URL", str(answer["url"])
    return "Path", f"{answer.get('path')}   (served by `plait server start`)"


def _show_token(answer: dict[str, Any], verb: str) -> None:
    from plait.cli._output import print_fields

    webhook = answer["webhook"]
    state = "" if webhook.get("enabled") else " (disabled)"
    click.echo(f"{verb} webhook {webhook['name']}{state}.")
    print_fields([_where(answer), ("Token", answer["token"])])
    click.echo("The token is shown only now. The sender sends it as `Authorization: Bearer <token>` "
               "(or `X-Plait-Webhook-Token: <token>`).")


def _show_webhooks(rows: list[dict[str, Any]]) -> None:
    from plait.cli._output import EMPTY, Column, fmt_time, print_message, print_table

    if not rows:
        print_message("No webhooks. Create one with `plait webhook create NAME`.")
        return
    print_table(
        [Column("Webhook", no_wrap=True), Column("Enabled", no_wrap=True), Column("Path", no_wrap=True),
         Column("Last called", no_wrap=True), Column("Description", max_width=50)],
        [[r["name"], "yes" if r.get("enabled") else "no", r.get("path") or EMPTY, fmt_time(r.get("last_called_at")),
          r.get("description") or EMPTY] for r in rows],
    )


def _show_webhook(row: dict[str, Any]) -> None:
    from plait.cli._output import EMPTY, fmt_time, print_fields, print_heading

    where = ("URL", row["url"]) if row.get("url") else ("Path", row.get("path"))
    print_fields([
        ("Webhook", row["name"]), ("Enabled", "yes" if row.get("enabled") else "no (its URL answers 404)"),
        where, ("Description", row.get("description") or EMPTY), ("Last called", fmt_time(row.get("last_called_at"))),
        ("Created", fmt_time(row.get("created"))), ("Updated", fmt_time(row.get("updated"))),
    ])
    print_heading("Template")
    click.echo(row.get("template") or EMPTY)


def _emit(data: Any, as_json: bool, show: Any) -> None:
    from plait.cli._output import echo_json

    if as_json:
        echo_json(data)
    else:
        show(data)


# -- commands -----------------------------------------------------------------------------------------
@click.group("webhook", cls=PlaitGroup)
def webhook_group() -> None:
    """Webhooks: URLs with their own token that turn HTTP calls into events (for automations)."""


@webhook_group.command("create")
@click.argument("name", metavar="NAME")
@click.option("--template", "template", default=None, metavar="TEXT",
              help="Jinja2 rendering the JSON of {event, resource: {id, ...}, payload} from body, headers, query.")
@click.option("--template-file", "template_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, metavar="FILE", help="Read the template from FILE.")
@click.option("--description", default="", help="What the webhook is for.")
@click.option("--disabled", is_flag=True, help="Create it disabled (its URL answers 404 until enabled).")
@json_option
def webhook_create_cmd(name: str, template: str | None, template_file: Path | None, description: str,
                       disabled: bool, as_json: bool) -> None:
    """Create a webhook and print its URL and token (shown only now).

    Without a template, a call makes the event external.webhook-called on resource
    webhook/NAME with the request's JSON body as its payload.
    """
    if template is not None and template_file is not None:
        raise CliError("give --template or --template-file, not both")
    if template_file is not None:
        template = template_file.read_text(encoding="utf-8")
    _emit(webhook_create(name, template=template, description=description, enabled=not disabled), as_json,
          lambda a: _show_token(a, "Created"))


@webhook_group.command("ls")
@json_option
def webhook_ls_cmd(as_json: bool) -> None:
    """List webhooks: enabled, path, last call, description."""
    _emit(webhook_ls(), as_json, _show_webhooks)


@webhook_group.command("inspect")
@click.argument("name", metavar="NAME")
@json_option
def webhook_inspect_cmd(name: str, as_json: bool) -> None:
    """Show a webhook and its template."""
    _emit(webhook_inspect(name), as_json, _show_webhook)


@webhook_group.command("rotate")
@click.argument("name", metavar="NAME")
@json_option
def webhook_rotate_cmd(name: str, as_json: bool) -> None:
    """Give a webhook a new token (printed only now); the old one stops working at once."""
    _emit(webhook_rotate(name), as_json, lambda a: _show_token(a, "Rotated the token of"))


@webhook_group.command("enable")
@click.argument("name", metavar="NAME")
@json_option
def webhook_enable_cmd(name: str, as_json: bool) -> None:
    """Enable a webhook: its URL makes events again."""
    _emit(webhook_enable(name), as_json, lambda r: click.echo(f"Enabled webhook {r['name']}."))


@webhook_group.command("disable")
@click.argument("name", metavar="NAME")
@json_option
def webhook_disable_cmd(name: str, as_json: bool) -> None:
    """Disable a webhook: its URL answers 404 (its token is kept for when it is enabled)."""
    _emit(webhook_disable(name), as_json, lambda r: click.echo(f"Disabled webhook {r['name']}."))


@webhook_group.command("delete")
@click.argument("name", metavar="NAME")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def webhook_delete_cmd(name: str, yes: bool, as_json: bool) -> None:
    """Delete a webhook: its URL answers 404 from now on."""
    if not yes:
        click.confirm(f"Delete webhook {name}?", abort=True, err=True)
    _emit(webhook_delete(name), as_json, lambda r: click.echo(f"Deleted webhook {r['name']}."))
