"""The click commands: parse options, call ``plait.cli.commands``, render with ``_views``.

Errors never reach the user as a traceback. ``PlaitGroup.invoke`` turns plait's errors
(``DatabaseError`` and friends), unknown flow run ids (``LookupError``), invalid settings
and anything unexpected into a one-line ``Error: ...`` on stderr with exit code 1; click's
usage errors keep exit code 2. Set ``PLAIT_CLI_TRACEBACK=1`` to get the traceback of an
unexpected error instead.
"""

from __future__ import annotations

import os
from typing import Any

import click
from click.decorators import FC

from plait._masking import mask, mask_url
from plait.cli import commands
from plait.exceptions import PlaitError

__all__ = ["cli", "PlaitGroup", "CliError"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class CliError(click.ClickException):
    """A one-line failure: ``Error: <message>`` on stderr, exit code 1."""

    exit_code = 1


def _secrets() -> list[str]:
    """The configured database URLs that hold a secret (a password, a ``password=`` query
    value): never printed, even before anything registered them."""
    candidates = [os.environ.get("PLAIT_DATABASE_URL")]
    try:
        from plait.settings import get_settings

        candidates.append(get_settings().effective_database_url)
    except Exception:  # invalid settings are reported elsewhere
        pass
    # A URL without a secret is no secret: its path (the SQLite file) stays readable.
    return [url for url in dict.fromkeys(filter(None, candidates)) if mask_url(url) != url]


def scrub(text: str) -> str:
    """``text`` on one line, masked by the one masking function: registered secrets, and the
    database URL's password (as written and decoded; the URL keeps its host and database)."""
    return " ".join(mask(text, extra=_secrets()).split())


def _settings_error(exc: Any) -> str:
    """A pydantic ``ValidationError`` of ``PlaitSettings`` as one readable line."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        name = f"PLAIT_{loc.upper()}" if loc else "settings"
        message = str(err.get("msg", "invalid"))
        parts.append(f"{name}: {message.removeprefix('Value error, ')}")
    return "invalid setting " + "; ".join(parts) if parts else f"invalid settings: {exc}"


def _is_validation_error(exc: BaseException) -> bool:
    return type(exc).__name__ == "ValidationError" and callable(getattr(exc, "errors", None))


class PlaitGroup(click.Group):
    """A click group that reports errors as one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # main() ends quietly
            raise
        except Exception as exc:
            raise CliError(scrub(_describe(exc))) from None


def _describe(exc: Exception) -> str:
    if isinstance(exc, PlaitError):
        return str(exc) or type(exc).__name__
    if _is_validation_error(exc):
        return _settings_error(exc)
    if isinstance(exc, LookupError) and not isinstance(exc, (KeyError, IndexError)):
        return str(exc)
    if isinstance(exc, ValueError):
        return str(exc)
    if os.environ.get("PLAIT_CLI_TRACEBACK", "") not in ("", "0"):
        raise exc
    return (
        f"unexpected {type(exc).__name__}: {exc} "
        "(this is a bug in plait; set PLAIT_CLI_TRACEBACK=1 to see the traceback)"
    )


def _version() -> str:
    import plait

    return plait.__version__


def json_option(fn: FC) -> FC:
    """The --json flag of the listing commands."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")(fn)


@click.group(cls=PlaitGroup, context_settings=CONTEXT)
@click.version_option(version=_version(), prog_name="plait", message="%(prog)s %(version)s")
def cli() -> None:
    """plait: plain Python functions as orchestrated flows and tasks.

    Inspect the run history recorded in the database (PLAIT_DATABASE_URL, default
    sqlite:///$PLAIT_HOME/plait.db) and the effective settings.
    """


@cli.command("version")
@json_option
def version_cmd(as_json: bool) -> None:
    """Show versions, the database URL and plait's home.

    Prints plait's version, the Python running it, the database URL (password masked)
    and plait's home directory. The database is not opened.
    """
    from plait.cli._output import echo_json
    from plait.cli._views import show_version

    info = commands.version_info()
    if as_json:
        echo_json(info)
    else:
        show_version(info)


@cli.group("config", cls=PlaitGroup)
def config_group() -> None:
    """Inspect plait's settings."""


@config_group.command("show")
@json_option
@click.option("--show-secrets", is_flag=True, help="Reveal passwords and secret values (masked by default).")
def config_show_cmd(as_json: bool, show_secrets: bool) -> None:
    """Show every setting's effective value and where it came from.

    Sources, highest first: env (a PLAIT_* variable), file ($PLAIT_HOME/config.toml),
    default.
    """
    from plait.cli._output import echo_json
    from plait.cli._views import show_config

    rows = commands.config_show(show_secrets=show_secrets)
    if as_json:
        echo_json(rows)
    else:
        show_config(rows)


@cli.group("flow-run", cls=PlaitGroup)
def flow_run_group() -> None:
    """List and inspect recorded flow runs."""


def wide_option(fn: FC) -> FC:
    """The --wide flag of the flow-run views."""
    return click.option(
        "--wide", is_flag=True,
        help="Every column, every cell whole, however wide the lines get (default: fit the terminal, "
             "or COLUMNS or 80 characters when piped).",
    )(fn)


class SinceType(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.2
    """``--since WHEN``: a time ago (``30m``, ``1h``, ``2d``, ``1w``) or an ISO date/time."""

    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return commands.parse_since(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


_STATE_HELP = ", ".join(s.lower() for s in commands.STATE_NAMES)
_TASK_HELP = (
    "a glob (*, ?, [...]) matches a whole task run name (extract-0) or task name (extract); anything else "
    "is a substring of one. Case-sensitive."
)


@flow_run_group.command("ls")
@click.option(
    "--state",
    type=click.Choice(commands.STATE_NAMES, case_sensitive=False),
    metavar="STATE",
    help="Only runs in this state: " + _STATE_HELP + ".",
)
@click.option("--flow", "flow_name", metavar="NAME", help="Only runs of the flow with this name.")
@click.option("--top-level", is_flag=True, help="Only runs that are not a subflow run.")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Only runs carrying this tag; repeat for several (runs carrying all of them).")
@click.option("--since", type=SinceType(), metavar="WHEN",
              help="Only runs created since WHEN: a time ago (30m, 1h, 2d, 1w) or an ISO date or date and "
                   "time (2026-11-21, 2026-11-21T10:40; without a time zone: local time).")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, metavar="N",
    help="Show at most this many runs (N >= 1).",
)
@click.option("--upcoming", is_flag=True,
              help="Only the scheduled runs made ahead (due later), soonest first; without it they are left out.")
@wide_option
@json_option
def flow_run_ls_cmd(
    state: str | None, flow_name: str | None, top_level: bool, tags: tuple[str, ...], since: Any, limit: int,
    upcoming: bool, wide: bool, as_json: bool,
) -> None:
    """List the newest flow runs, newest first.

    Runs a deployment's schedule made ahead, due later, are listed with --upcoming only.
    The table fits the width by shortening the Flow, Name and Message cells (never ids);
    `plait flow-run inspect ID` shows a run's whole message.
    """
    from plait.cli._output import echo_json
    from plait.cli._views import show_flow_runs

    rows = commands.flow_run_ls(
        state=state, flow_name=flow_name, limit=limit, upcoming=upcoming, top_level=top_level, tags=tags,
        since=since,
    )
    if as_json:
        echo_json(rows)
    else:
        show_flow_runs(rows, wide=wide)


@flow_run_group.command("inspect")
@click.argument("flow_run_id", metavar="ID")
@click.option(
    "--state", "states", multiple=True,
    type=click.Choice(commands.STATE_NAMES, case_sensitive=False), metavar="STATE",
    help="Only task runs in this state; repeat for several: " + _STATE_HELP + ".",
)
@click.option("--task", metavar="NAME", help="Only task runs whose name matches NAME: " + _TASK_HELP)
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="Show at most N task runs, failed and crashed ones first.")
@wide_option
@json_option
def flow_run_inspect_cmd(
    flow_run_id: str, states: tuple[str, ...], task: str | None, limit: int | None, wide: bool, as_json: bool,
) -> None:
    """Show one flow run in detail.

    Prints its state and whole message, parameters, task runs (failed and crashed first:
    state, duration, attempts, upstream, message), then each failed or crashed task run
    in full (state, attempts, upstream and its whole message, wrapped to the width), the
    state history, subflow runs and the artifacts the run made. --wide adds retries, cache
    keys and results to the table. ID is the flow run's id or its first few characters.

    With --json the record is complete; the filters leave out task runs, and
    task_run_count says how many there are in all.
    """
    from plait.cli._output import echo_json
    from plait.cli._views import show_flow_run
    from plait.cli.artifacts import artifacts_of_flow_run, show_flow_run_artifacts

    run = commands.flow_run_inspect(flow_run_id, state=states, task=task, limit=limit)
    artifacts = artifacts_of_flow_run(str(run["id"]))
    if as_json:
        echo_json({**run, "artifacts": artifacts})
    else:
        show_flow_run(run, wide=wide)
        show_flow_run_artifacts(artifacts)


@flow_run_group.command("logs")
@click.argument("flow_run_id", metavar="ID")
@click.option("--task", metavar="NAME", help="Only lines of task runs whose name matches NAME: " + _TASK_HELP)
@click.option("--level", type=click.Choice(commands.LEVEL_NAMES, case_sensitive=False), metavar="LEVEL",
              help="Only lines at this level or above: " + ", ".join(lv.lower() for lv in commands.LEVEL_NAMES) + ".")
@json_option
def flow_run_logs_cmd(flow_run_id: str, task: str | None, level: str | None, as_json: bool) -> None:
    """Show a flow run's logs.

    Prints the log lines of the flow run, its task runs and its subflow runs, oldest
    first; a long or multi-line message (a traceback) wraps under the message column.
    ID is the flow run's id or its first few characters.
    """
    from plait.cli._output import echo_json
    from plait.cli._views import show_logs

    rows = commands.flow_run_logs(flow_run_id, task=task, level=level)
    if as_json:
        echo_json(rows)
    else:
        show_logs(rows, flow_run_id, filtered=bool(task or level))


# Command groups defined in their own modules (imported last: they use PlaitGroup and json_option).
from plait.cli.artifacts import artifact_group  # noqa: E402
from plait.cli.automations import automation_group  # noqa: E402
from plait.cli.blocks import block_group  # noqa: E402
from plait.cli.collections import collection_group  # noqa: E402
from plait.cli.concurrency import concurrency_limit_group  # noqa: E402
from plait.cli.deployments import FLOW_RUN_COMMANDS, deploy_cmd, deployment_group, work_pool_group  # noqa: E402
from plait.cli.notifications import notification_group  # noqa: E402
from plait.cli.plugins import plugins_group  # noqa: E402
from plait.cli.registry import registry_group  # noqa: E402
from plait.cli.run import run_cmd  # noqa: E402
from plait.cli.server import server_group  # noqa: E402
from plait.cli.spool import spool_group  # noqa: E402
from plait.cli.variables import variable_group  # noqa: E402
from plait.cli.webhooks import webhook_group  # noqa: E402
from plait.cli.worker import worker_group  # noqa: E402

cli.add_command(automation_group)
cli.add_command(block_group)
cli.add_command(collection_group)
cli.add_command(concurrency_limit_group)
cli.add_command(notification_group)
cli.add_command(plugins_group)
cli.add_command(server_group)
cli.add_command(spool_group)
cli.add_command(registry_group)
cli.add_command(worker_group)
cli.add_command(webhook_group)
cli.add_command(variable_group)
cli.add_command(artifact_group)
cli.add_command(deploy_cmd)
cli.add_command(deployment_group)
cli.add_command(work_pool_group)
cli.add_command(run_cmd)
for _command in FLOW_RUN_COMMANDS:
    flow_run_group.add_command(_command)
