"""``plait worker start --pool NAME``: run the flow runs of a work pool on this machine.

The worker talks to the server ``PLAIT_API_URL`` names, or, without it, to the local store
(``PLAIT_DATABASE_URL``). It runs until SIGTERM or Ctrl-C: then it claims nothing more,
lets the runs in flight finish (``--shutdown-grace``), ends the rest Crashed and prints
what it ran. A second Ctrl-C stops the runs at once.
"""

from __future__ import annotations

import logging

import click

from plait.cli._app import PlaitGroup

__all__ = ["worker_group"]


@click.group("worker", cls=PlaitGroup)
def worker_group() -> None:
    """Run workers: processes that run the flow runs of a work pool."""


@worker_group.command("start")
@click.option("--pool", required=True, metavar="NAME", help="The work pool whose runs to run (it must exist).")
@click.option("--name", default=None, metavar="NAME", help="This worker's name in the pool (default: HOST-PID).")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Most flow runs at once (default: no limit).")
@click.option("--queue", "queues", multiple=True, metavar="QUEUE",
              help="Only claim runs of this queue of the pool (repeat for several; default: every queue).")
@click.option("--poll-interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True, metavar="S",
              help="Seconds between claims of due runs.")
@click.option("--heartbeat-interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              metavar="S", help="Seconds between heartbeats; two missed ones and the worker counts as dead.")
@click.option("--cancel-grace", type=click.FloatRange(min=0), default=2.0, show_default=True, metavar="S",
              help="Seconds a cancelled run may take to stop by itself before its process is stopped.")
@click.option("--shutdown-grace", type=click.FloatRange(min=0), default=30.0, show_default=True, metavar="S",
              help="On SIGTERM/Ctrl-C, seconds the runs in flight may take to finish.")
@click.option("--run-once", is_flag=True, help="Run the runs due now, wait for them, and exit.")
def worker_start_cmd(
    pool: str,
    name: str | None,
    limit: int | None,
    queues: tuple[str, ...],
    poll_interval: float,
    heartbeat_interval: float,
    cancel_grace: float,
    shutdown_grace: float,
    run_once: bool,
) -> None:
    """Poll work pool NAME and run its flow runs here until stopped.

    Each claimed run goes through the pool type's infrastructure (process: a Python
    subprocess in the deployment's directory, or in its downloaded code bundle), with the
    job variables of the pool, the deployment and the run (later ones win). Its output is
    echoed here and stored in the run's logs.
    """
    from plait._logging import setup_logging
    from plait.worker import Worker

    setup_logging()
    for logger_name in ("plait.worker", "plait.infrastructure"):
        target = logging.getLogger(logger_name)
        if target.level == logging.NOTSET:
            target.setLevel(logging.INFO)
    worker = Worker(
        pool, name=name, limit=limit, queues=list(queues) or None, poll_interval=poll_interval,
        heartbeat_interval=heartbeat_interval, cancel_grace=cancel_grace, shutdown_grace=shutdown_grace,
    )
    tally = worker.run(once=run_once)
    summary = ", ".join(f"{count} {state.title()}" for state, count in sorted(tally.items())) or "no runs"
    click.echo(f"worker {worker.name!r} of pool {worker.pool!r} stopped: {summary}")
