"""``plait server ...``: run the API server and manage its API keys.

``plait server start`` serves the configured store (``PLAIT_DATABASE_URL``, default the
SQLite file under ``PLAIT_HOME``) with uvicorn. Auth: on when any API key exists; on a
loopback address with no key at all the server runs open (the banner says so) and closes
as soon as a key is made; on any other address it refuses to start without a key, unless
``--insecure-no-auth`` says to serve anyone. ``SIGTERM``/``Ctrl-C`` stop it gracefully:
requests in flight finish, event streams end, the services give up their leases.

``plait server api-key create|ls|revoke`` work on the store directly (an admin on the
server's host), never through the API.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from datetime import timedelta
from typing import Any

import click

from plait.cli._app import CliError, PlaitGroup, json_option

__all__ = ["server_group", "parse_duration", "is_loopback", "run_server"]

SCOPES = ("read", "run", "admin")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` as a timedelta.

    Raises:
        ValueError: ``text`` is not a positive number followed by s, m, h, d or w.
    """
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration; give a positive number and a unit: 90m, 12h, 30d, 2w")
    seconds = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds > 100 * 365 * 86400:
        raise ValueError(f"{text!r} is more than 100 years; leave --expires-in out for a key that never expires")
    return timedelta(seconds=seconds)


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@click.group("server", cls=PlaitGroup)
def server_group() -> None:
    """Run the plait server (API) and manage its API keys."""


# -- start ----------------------------------------------------------------------------------------
@server_group.command("start")
@click.option("--host", default=None, metavar="ADDRESS",
              help="Address to bind (default: the setting server_host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Port to listen on (default: the setting server_port, 4300).")
@click.option("--insecure-no-auth", is_flag=True,
              help="Serve without API keys even on a non-loopback address (anyone who can reach it may read and "
                   "write the history): for trying it out only.")
def start_cmd(host: str | None, port: int | None, insecure_no_auth: bool) -> None:
    """Serve the run history's API (FastAPI + uvicorn) until stopped.

    The API is under /api/v1 (docs at /api/v1/docs, OpenAPI at /api/v1/openapi.json).
    Auth is on when any API key exists (make one with `plait server api-key create`). On a
    loopback address with no key the server runs open until a key exists; on any other
    address it refuses to start without a key unless --insecure-no-auth.
    """
    from plait.settings import get_settings

    _serve_own_store()
    settings = get_settings()
    host = (host or settings.server_host).strip()
    port = settings.server_port if port is None else port
    run_server(host, port, insecure_no_auth=insecure_no_auth)


def _serve_own_store() -> None:
    """A server serves its own store: a PLAIT_API_URL meant for clients (env or config.toml)
    must not send the server's own block reads to another server, or to itself."""
    from plait.settings import get_settings

    if os.environ.get("PLAIT_API_URL") or get_settings().api_url:
        click.echo("note: PLAIT_API_URL is ignored by `plait server start`; it serves its own store", err=True)
    os.environ["PLAIT_API_URL"] = ""  # an empty value beats config.toml and means "not set"
    os.environ.pop("PLAIT_API_KEY", None)  # get_settings() sees the change at once


def _auth_mode(db: Any, host: str, insecure_no_auth: bool) -> tuple[bool | None, str]:
    """(create_app's auth, the banner's words) for serving ``db`` on ``host``.

    Raises:
        CliError: A non-loopback host, no API key and no --insecure-no-auth.
    """
    from plait._store.api_keys import api_keys_exist

    if insecure_no_auth:
        where = "anyone who can reach this address" if not is_loopback(host) else "anyone on this machine"
        return False, f"OFF (--insecure-no-auth): {where} may read and write the history"
    if api_keys_exist(db):
        return True, "on (send Authorization: Bearer <key>)"
    if not is_loopback(host):
        raise CliError(
            f"refusing to serve {host} without auth: no API key exists, and this address is reachable from other "
            "machines. Create a key first (`plait server api-key create NAME --scope admin`), bind to 127.0.0.1, "
            "or pass --insecure-no-auth to serve anyone"
        )
    return None, ("off: no API key exists, so anyone on this machine may use the API; it turns on once a key "
                  "exists (`plait server api-key create NAME --scope admin`)")


def _url(host: str, port: int) -> str:
    shown = host
    if ":" in host and not host.startswith("["):
        shown = f"[{host}]"
    return f"http://{shown}:{port}"


class MaskedAccessLog(logging.Filter):
    """uvicorn's access log quotes each request's path with its query string: password-like
    query values (a webhook's ``?token=``) are masked there."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            from plait._masking import mask_url

            record.args = (*args[:2], mask_url(args[2]), *args[3:])
        return True


def _log_config() -> dict[str, Any]:
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for name in ("plait.server", "plait.store"):
        config["loggers"][name] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config.setdefault("filters", {})["masked_query"] = {"()": MaskedAccessLog}
    config["handlers"]["access"]["filters"] = ["masked_query"]
    return config


def run_server(host: str, port: int, *, insecure_no_auth: bool = False) -> None:
    """Serve the configured store on ``host:port`` until SIGTERM/SIGINT (the body of
    ``plait server start``).

    Raises:
        CliError: Refusing to serve a non-loopback host without auth, or the server extra
            is missing.
        DatabaseError: The store cannot be opened.
    """
    try:
        import uvicorn
    except ImportError:
        raise CliError("the server needs FastAPI and uvicorn: pip install 'plait[server]'") from None
    from plait import __version__
    from plait._store.database import get_database
    from plait.server.app import begin_shutdown, create_app

    db = get_database()
    auth, auth_words = _auth_mode(db, host, insecure_no_auth)
    app = create_app(db, auth=auth)
    url = _url(host, port)
    click.echo(
        f"plait server {__version__}\n"
        f"  API:    {url}/api/v1   (docs {url}/api/v1/docs)\n"
        f"  store:  {db.url_masked}\n"
        f"  auth:   {auth_words}\n"
        f"  client: PLAIT_API_URL={url}/api plait ...\n"
        "Stop with Ctrl-C (or SIGTERM): requests in flight finish first."
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            begin_shutdown(app)  # event streams end, so the connections they hold can close
            super().handle_exit(sig, frame)

        def capture_signals(self) -> Any:
            # uvicorn re-raises the signal after a graceful stop (the process then dies of
            # it); a server that stopped as asked exits 0 instead
            import contextlib
            import signal

            @contextlib.contextmanager
            def captured() -> Any:
                signals = (signal.SIGINT, signal.SIGTERM)
                previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
                try:
                    yield
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)

            return captured()

    config = uvicorn.Config(
        app, host=host, port=port, log_config=_log_config(), timeout_graceful_shutdown=30,
        server_header=False, lifespan="on",
    )
    Server(config).run()


# -- api keys -------------------------------------------------------------------------------------
@server_group.group("api-key", cls=PlaitGroup)
def api_key_group() -> None:
    """Create, list and revoke the server's API keys (on the server's store)."""


@api_key_group.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(SCOPES), required=True,
              help="read: read everything but secrets; run: also record runs, save blocks, read secrets on "
                   "request; admin: everything.")
@click.option("--expires-in", "expires_in", metavar="DURATION",
              help="The key stops working after this long: 90m, 12h, 30d, 2w (default: never).")
@json_option
def api_key_create_cmd(name: str, scope: str, expires_in: str | None, as_json: bool) -> None:
    """Create an API key and print it (once: the store keeps only its hash)."""
    from plait._runs import utcnow
    from plait._store.api_keys import create_api_key
    from plait._store.database import get_database
    from plait.cli._output import echo_json

    expires_at = None
    if expires_in is not None:
        try:
            expires_at = utcnow() + parse_duration(expires_in)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--expires-in") from None
    info, key = create_api_key(get_database(), name, scope, expires_at=expires_at)
    if as_json:
        echo_json({**_public(info), "key": key})
        return
    expiry = f", expires {info.get('expires_at')}" if info.get("expires_at") else ""
    click.echo(f"Created API key {info.get('name', name)!r} (scope {scope}{expiry}). It is shown only now:\n")
    click.echo(f"  {key}\n")
    click.echo("Send it as `Authorization: Bearer <key>`; for plait itself set PLAIT_API_KEY=<key>.")


def _public(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k not in ("hash", "key")}


def _status(info: dict[str, Any]) -> str:
    if info.get("revoked_at"):
        return "revoked"
    if info.get("expired") or info.get("status") == "expired":
        return "expired"
    return str(info.get("status") or "active")


@api_key_group.command("ls")
@json_option
def api_key_ls_cmd(as_json: bool) -> None:
    """List the API keys: name, prefix, scope, dates, status (never the key)."""
    from plait._store.api_keys import list_api_keys
    from plait._store.database import get_database
    from plait.cli._output import Cell, Column, echo_json, fmt_time, print_message, print_table

    keys = [_public(k) for k in list_api_keys(get_database())]
    if as_json:
        echo_json(keys)
        return
    if not keys:
        print_message("No API keys. Create one with `plait server api-key create NAME --scope read|run|admin`.")
        return
    styles = {"active": "green", "revoked": "bright_black", "expired": "yellow"}
    print_table(
        [Column("Name", no_wrap=True), Column("Prefix", no_wrap=True), Column("Scope"), Column("Created"),
         Column("Expires"), Column("Last used"), Column("Status")],
        [
            [k.get("name"), k.get("prefix"), k.get("scope"), fmt_time(k.get("created")),
             fmt_time(k.get("expires_at")), fmt_time(k.get("last_used_at")),
             Cell(_status(k), styles.get(_status(k), ""))]
            for k in keys
        ],
    )


@api_key_group.command("revoke")
@click.argument("name")
def api_key_revoke_cmd(name: str) -> None:
    """Revoke an API key (by name or prefix): it stops working at once."""
    from plait._store.api_keys import revoke_api_key
    from plait._store.database import get_database

    if not revoke_api_key(get_database(), name):
        raise CliError(f"no active API key named {name!r}; see `plait server api-key ls`")
    click.echo(f"Revoked API key {name!r}.")
