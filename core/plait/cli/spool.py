"""``plait spool ...``: records waiting for an unreachable plait server.

A process that records to a plait server (PLAIT_API_URL) and cannot reach it leaves its
records in its journal under PLAIT_HOME (``plait._spool``). ``plait spool status`` lists
those journals; ``plait spool flush`` delivers the ones whose process has ended, in order
and exactly once. Both are plain functions too (``spool_status``, ``spool_flush``).
"""

from __future__ import annotations

from typing import Any

import click

from plait.cli._app import PlaitGroup, json_option

__all__ = ["spool_group", "spool_status", "spool_flush"]


def spool_status() -> list[dict[str, Any]]:
    """The journals under PLAIT_HOME holding records for a plait server, oldest first:
    ``{journal, pid, host, alive, destination, digest, segments, flow_runs, records,
    oldest, oldest_age_seconds}`` (see ``plait._spool.spool_status``). Works without a
    server configured or reachable."""
    from plait._spool import spool_status as status
    from plait.settings import get_settings

    return status(get_settings().home)


def spool_flush() -> dict[str, Any]:
    """Deliver the spooled records to the server PLAIT_API_URL names.

    Returns:
        ``{destination, journals, batches, records, remaining_journals, error}`` (see
        ``plait._spool.deliver_spool``).

    Raises:
        plait._api.ApiConfigError: PLAIT_API_URL is not set.
    """
    from plait._api.sink import ApiRunSink
    from plait._spool import deliver_spool
    from plait.settings import get_settings

    settings = get_settings()
    sink = ApiRunSink.from_settings(settings)
    try:
        return deliver_spool(sink, settings.home)
    finally:
        sink.close()


def _age(seconds: float | None) -> str:
    from plait.cli._output import EMPTY, fmt_duration

    return EMPTY if seconds is None else fmt_duration(seconds)


def _show_status(rows: list[dict[str, Any]]) -> None:
    from plait.cli._output import Cell, Column, print_message, print_table

    if not rows:
        print_message("Nothing is waiting for a plait server.")
        return
    print_table(
        [Column("Journal", no_wrap=True), Column("Process", no_wrap=True), Column("Records", justify="right"),
         Column("Flow runs", justify="right"), Column("Oldest", no_wrap=True), Column("Destination")],
        [
            [
                r["journal"],
                Cell("running", "blue") if r["alive"] else Cell("ended", "yellow"),
                str(r["records"]),
                str(r["flow_runs"]),
                _age(r["oldest_age_seconds"]),
                r["destination"],
            ]
            for r in rows
        ],
    )
    waiting = [r for r in rows if not r["alive"]]
    if waiting:
        click.echo("")
        print_message(
            f"{sum(r['records'] for r in waiting)} record(s) of {len(waiting)} ended process(es) wait; "
            "`plait spool flush` delivers them (any plait command does once the server answers)."
        )


@click.group("spool", cls=PlaitGroup)
def spool_group() -> None:
    """Show and deliver run records waiting for the plait server."""


@spool_group.command("status")
@json_option
def spool_status_cmd(as_json: bool) -> None:
    """List the journals under PLAIT_HOME whose records wait for a plait server.

    For each: its process (running: it delivers them itself; ended: `plait spool flush`
    does), how many records it holds, the age of the oldest and the server it is for.
    """
    from plait.cli._output import echo_json

    rows = spool_status()
    if as_json:
        echo_json(rows)
    else:
        _show_status(rows)


@spool_group.command("flush")
@json_option
def spool_flush_cmd(as_json: bool) -> None:
    """Deliver the waiting records of ended processes to the server PLAIT_API_URL names.

    Each journal's records go in order, exactly once. Exits 1 when the server did not
    answer or refused records (what was not delivered stays for the next try).
    """
    from plait.cli._app import CliError
    from plait.cli._output import echo_json

    result = spool_flush()
    if as_json:
        echo_json(result)
    elif result["records"] or not result["error"]:
        click.echo(
            f"Delivered {result['records']} record(s) from {result['journals']} journal(s) to "
            f"{result['destination']}."
            + (f" {result['remaining_journals']} journal(s) still wait." if result["remaining_journals"] else "")
        )
    if result["error"]:
        raise CliError(f"{result['error']} (the records that were not delivered stay in the spool)")
