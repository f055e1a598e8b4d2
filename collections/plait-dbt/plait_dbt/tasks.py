"""The prebuilt task: ``dbt_run``, one dbt command as a plait task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from plait import task
from plait_dbt.artifacts import DbtRunResult
from plait_dbt.operation import DbtCoreOperation
from plait_dbt.profiles import DbtCliProfile
from plait_dbt.translator import DbtNodeTranslator

__all__ = ["dbt_run"]


@task(name="dbt_run")
def dbt_run(
    command: str,
    project_dir: str | Path,
    profile: DbtCliProfile | str | None = None,
    select: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    selector: str | None = None,
    vars: dict[str, Any] | None = None,  # noqa: A002 - dbt's name for them
    target: str | None = None,
    full_refresh: bool = False,
    extra_args: Sequence[str] | None = None,
    retry_failed_only: bool = True,
    record_nodes: bool = True,
    translator: DbtNodeTranslator | None = None,
    callbacks: Sequence[Callable[[Any], None]] | None = None,
    store_artifacts: bool = True,
    log_level: str = "info",
    isolation: str = "thread",
    from_run: str | None = None,
    artifact_retention: int | None = None,
) -> DbtRunResult:
    """Run a dbt Core command (build, run, test, seed, snapshot, compile, deps...) in-process.

    dbt's log lines stream into this task run's logs. Inside a flow run, every node dbt
    executed becomes its own task run: Completed, Failed with dbt's message, or Cancelled
    ("Skipped") when dbt skipped it after an upstream failure, with dependency edges from the
    manifest. With ``retries=`` on the task and ``retry_failed_only`` (the default), later
    attempts run ``dbt retry``: only the nodes that failed or were skipped.

    Args:
        command: The dbt command and its own arguments, e.g. ``"build"`` or ``"run --select orders+"``.
        project_dir: Directory of the dbt project (holding dbt_project.yml).
        profile: A DbtCliProfile, or the name of a saved one; None lets dbt find profiles.yml itself.
        select: Nodes to run (dbt ``--select``), one selection or a list of them.
        exclude: Nodes to leave out (dbt ``--exclude``).
        selector: A named selector of selectors.yml.
        vars: Project variables (dbt ``--vars``).
        target: A target other than the profile's.
        full_refresh: Rebuild incremental models and seeds from scratch.
        extra_args: More dbt arguments, added last (``["--fail-fast"]``).
        retry_failed_only: Later attempts of this task run rerun only failed and skipped nodes.
        record_nodes: Record each executed node as its own task run.
        translator: A DbtNodeTranslator deciding task names, tags and which nodes to record.
        callbacks: More dbt event callbacks (each receives every dbt ``EventMsg``).
        store_artifacts: Copy run_results.json and manifest.json into plait result storage.
        log_level: Lowest dbt log level forwarded to the run logs (debug, info, warn, error).
        isolation: ``"thread"`` (default) runs dbt in this process, one command at a time per
            process; ``"process"`` runs it in a child process so several dbt commands can run
            in parallel tasks (node runs are still recorded live; ``callbacks`` then receive
            plait's rebuilt events, with ``info`` and ``data.node_info`` but not dbt's full
            event objects).
        from_run: With ``command="retry"``: the id of an earlier flow run; its last failed dbt
            command on this project is retried (only its failed and skipped nodes), in any
            process, from the artifacts it stored in result storage.
        artifact_retention: Keep the stored artifact copies of only the newest N dbt
            invocations (older ones are deleted); None (default) keeps all.

    Returns:
        A DbtRunResult: artifact paths and stored copies, and each node's result.

    Raises:
        DbtProjectNotFound: project_dir has no dbt_project.yml (raised before dbt starts).
        DbtCommandError: dbt did not succeed; the message is dbt's (compilation error, or
            the failed nodes with dbt's message for each); ``.result`` has the details.

    Example:
        dbt_run("build", project_dir="jaffle", profile=DbtCliProfile.load("jaffle-dev"), exclude="tag:slow")
    """
    if isinstance(profile, str):
        profile = DbtCliProfile.load(profile)
    operation = DbtCoreOperation(
        command=command,
        project_dir=str(project_dir),
        profile=profile,
        select=select,
        exclude=exclude,
        selector=selector,
        vars=vars or {},
        target=target,
        full_refresh=full_refresh,
        extra_args=list(extra_args or ()),
        retry_failed_only=retry_failed_only,
        record_nodes=record_nodes,
        store_artifacts=store_artifacts,
        log_level=log_level,
        isolation=isolation,
        from_run=from_run,
        artifact_retention=artifact_retention,
    )
    return operation.run(translator=translator, callbacks=callbacks or ())
