"""``DbtCoreOperation``: one dbt command on one project, run in-process by dbt-core.

    from plait import flow
    from plait_dbt import DbtCoreOperation, DbtCliProfile

    @flow
    def nightly():
        DbtCoreOperation(command="build", project_dir="jaffle", profile=DbtCliProfile.load("prod")).run()

``dbt_run`` (in ``plait_dbt.tasks``) is the same as a task. Inside a flow run every node dbt
executed becomes its own task run (see ``plait_dbt.nodes``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from plait import get_run_logger, register_secret, runtime
from plait.blocks import Block
from plait.exceptions import PlaitError
from plait_dbt import _invoke, stored
from plait_dbt.artifacts import DbtNodeResult, DbtRunResult, load_json
from plait_dbt.exceptions import DbtCommandError, DbtError
from plait_dbt.nodes import LiveNodes
from plait_dbt.profiles import DbtCliProfile
from plait_dbt.translator import DbtNodeTranslator

__all__ = ["DbtCoreOperation"]


class DbtCoreOperation(Block):
    """One dbt Core command (build, run, test, seed, snapshot, compile, deps...) on a dbt
    project, with a profile; ``run()`` runs it in-process and returns a DbtRunResult.

    Inside a flow run, every node dbt executed is recorded as its own task run with dbt's
    outcome, and dbt's log lines go to the run logs as they happen.
    """

    block_type_slug: ClassVar[str] = "dbt-core-operation"
    block_type_name: ClassVar[str] = "dbt Core Operation"
    code_example: ClassVar[str] = """\
from plait import flow
from plait_dbt import DbtCliProfile, DbtCoreOperation

DbtCoreOperation(
    command="build", project_dir="/srv/jaffle", profile=DbtCliProfile.load("jaffle-prod"),
    exclude=["tag:nightly-only"],
).save("jaffle-build")

@flow
def nightly():
    return DbtCoreOperation.load("jaffle-build").run()
"""

    command: str = Field(default="build", min_length=1,
                         description="The dbt command and its own arguments, e.g. 'build' or 'run --select orders+'.")
    project_dir: str = Field(min_length=1, description="Directory of the dbt project (holding dbt_project.yml).")
    profile: DbtCliProfile | None = Field(
        default=None,
        description="The profile to use; None lets dbt find profiles.yml as usual (DBT_PROFILES_DIR, the "
        "project, ~/.dbt).",
    )
    select: list[str] = Field(default_factory=list, description="Node selection (dbt --select), e.g. ['orders+'].")
    exclude: list[str] = Field(default_factory=list, description="Nodes to leave out (dbt --exclude).")
    selector: str | None = Field(default=None, description="A named selector of selectors.yml (dbt --selector).")
    vars: dict[str, Any] = Field(default_factory=dict, description="Project variables (dbt --vars).")
    target: str | None = Field(default=None, description="Target to use instead of the profile's target.")
    full_refresh: bool = Field(default=False, description="Rebuild incremental models and seeds from scratch.")
    extra_args: list[str] = Field(
        default_factory=list, description="More dbt arguments, added last, e.g. ['--fail-fast', '--threads', '8']."
    )
    retry_failed_only: bool = Field(
        default=True,
        description="On a task run's later attempts, run `dbt retry`: only the nodes that failed or were "
        "skipped in the previous attempt.",
    )
    record_nodes: bool = Field(default=True, description="Record each executed dbt node as its own task run.")
    store_artifacts: bool = Field(
        default=True, description="Copy run_results.json and manifest.json into plait result storage."
    )
    from_run: str | None = Field(
        default=None,
        description="With command 'retry': the id of an earlier flow run whose failed dbt command on this "
        "project is retried (its failed and skipped nodes), from any process; its artifacts are read from "
        "result storage.",
    )
    artifact_retention: int | None = Field(
        default=None, ge=1,
        description="Keep the stored artifact copies of only the newest N dbt invocations in the artifact "
        "storage (older copies are deleted); None keeps all.",
    )
    isolation: str = Field(
        default="thread",
        description="'thread': dbt runs in this process, one dbt command at a time per process (dbt's "
        "state is process-wide). 'process': dbt runs in a child process, so several commands can run at "
        "once; node task runs are still recorded live from the events the child streams back.",
    )
    log_level: str = Field(default="info", description="Lowest dbt log level forwarded to the run logs: "
                           "debug, info, warn or error.")

    @field_validator("select", "exclude", "extra_args", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("isolation")
    @classmethod
    def _check_isolation(cls, value: str) -> str:
        if value not in _invoke.ISOLATIONS:
            raise ValueError(f"isolation must be one of {', '.join(_invoke.ISOLATIONS)}")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        if value not in _invoke.LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(_invoke.LOG_LEVELS)}")
        return value

    def run(
        self,
        translator: DbtNodeTranslator | None = None,
        callbacks: Sequence[Callable[[Any], None]] = (),
        artifact_storage: Any = None,
    ) -> DbtRunResult:
        """Run the command; return its DbtRunResult, or raise DbtCommandError with dbt's message.

        Args:
            translator: Maps dbt nodes to task runs (default ``DbtNodeTranslator()``).
            callbacks: More dbt event callbacks, each called with every dbt ``EventMsg``.
            artifact_storage: Where artifacts are copied: a path, URL or storage block
                (default: plait's result storage).

        Raises:
            DbtProjectNotFound: project_dir holds no dbt_project.yml (dbt is not started).
            DbtProfileError: The profile cannot be written (missing adapter, bad file...).
            DbtError: An unknown command, or an option the command does not take.
            DbtCommandError: dbt did not succeed; ``.result`` holds what it left.
        """
        project = _invoke.check_project(self.project_dir)
        tokens = _invoke.split_command(self.command)
        _invoke.check_options(tokens, select=self.select, exclude=self.exclude, selector=self.selector,
                              full_refresh=self.full_refresh)
        logger = _run_logger()
        attempt = max(runtime.task_run.run_count, 1)
        key = (runtime.task_run.id, str(project), self.command)
        state = None
        with contextlib.ExitStack() as cleanup:
            if self.from_run is not None:
                if tokens != ["retry"]:
                    raise DbtError(f"from_run= goes with the command 'retry', not {self.command!r}")
                state = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="plait-dbt-state-")))
                entry = stored.fetch_previous_state(self.from_run, str(project), artifact_storage, state)
                logger.info("retrying the failed and skipped nodes of dbt %s (invocation %s) of flow run %s",
                            entry.get("executed_command"), entry.get("invocation_id"), self.from_run)
            elif self.retry_failed_only and attempt > 1 and runtime.task_run.id is not None:
                state = _invoke.retry_state(key)
                if state is not None:
                    logger.info("attempt %d: running `dbt retry` for the nodes that failed or were skipped before",
                                attempt)
            return self._run(project, tokens, state, key, attempt, logger, translator, callbacks, artifact_storage)

    def _run(self, project: Path, tokens: list[str], state: Path | None, key: tuple[Any, ...], attempt: int,
             logger: Any, translator: DbtNodeTranslator | None, callbacks: Sequence[Callable[[Any], None]],
             artifact_storage: Any) -> DbtRunResult:
        executed = ["retry"] if state is not None else tokens
        profile = self.profile
        if profile is not None:
            for secret in profile.secret_values():
                register_secret(secret)
        sink = _invoke.EventSink(logger, self.log_level, callbacks)
        if self.record_nodes and runtime.flow_run.id is not None:
            sink.live = LiveNodes(translator or DbtNodeTranslator(), sink.artifacts, lambda: sink.invocation_id)
        with profile.profiles_dir() if profile is not None else contextlib.nullcontext(None) as profiles_dir:
            args = _invoke.build_args(
                executed, project, profiles_dir,
                profile.name if profile is not None else None,
                self.target or (profile.target_name if profile is not None else None),
                select=() if state else self.select, exclude=() if state else self.exclude,
                selector=None if state else self.selector, vars=self.vars,
                full_refresh=self.full_refresh, state=state, extra_args=self.extra_args,
            )
            logger.info("running dbt %s", " ".join(_invoke.shown_args(args)))
            try:
                if self.isolation == "process":
                    outcome = _invoke.invoke_in_process(args, sink, self.log_level)
                else:
                    outcome = _invoke.invoke(args, sink)
            finally:
                if sink.live is not None:
                    sink.live.close("the dbt command ended")
        result = self._result(tokens, executed, args, project, outcome, sink, profiles_dir, attempt)
        if self.store_artifacts:
            result.artifacts = stored.store_artifacts(result, artifact_storage, logger, runtime.flow_run.id,
                                                      runtime.task_run.id, self.artifact_retention)
        if result.success:
            _invoke.forget(key)
            logger.info("%s", result.summary())
            return result
        _invoke.remember_failure(key, result.run_results_path, result.invocation_id)
        raise DbtCommandError(f"dbt {_invoke.command_name(tokens)} failed: {result.error}",
                              command=_invoke.command_name(tokens), result=result)

    def _result(self, tokens: list[str], executed: list[str], args: list[str], project: Path, outcome: Any,
                sink: _invoke.EventSink, profiles_dir: Path | None, attempt: int) -> DbtRunResult:
        run_results_path = _own_artifact(sink, "run_results.json")
        run_results = _load_quietly(run_results_path)
        nodes = [DbtNodeResult.from_run_results(entry) for entry in (run_results or {}).get("results") or []]
        result = DbtRunResult(
            command=" ".join(tokens),
            executed_command=" ".join(executed),
            args=_invoke.shown_args(args),
            success=bool(outcome.success),
            project_dir=str(project),
            invocation_id=sink.invocation_id,
            run_results_path=run_results_path if run_results is not None else None,
            manifest_path=_own_artifact(sink, "manifest.json"),
            nodes=nodes,
            elapsed_time=(run_results or {}).get("elapsed_time"),
            profiles_dir=str(profiles_dir) if profiles_dir is not None else None,
            attempt=attempt,
        )
        if not result.success:
            result.error = _failure_message(outcome, result, sink, recorded=sink.live is not None)
        return result


def _run_logger() -> Any:
    try:
        return get_run_logger()
    except PlaitError:  # outside any flow or task run
        return logging.getLogger("plait_dbt")


def _own_artifact(sink: _invoke.EventSink, name: str) -> str | None:
    """The artifact this invocation wrote (never a stale one from an earlier command)."""
    path = sink.artifacts.get(name)
    if path is None or not Path(path).is_file():
        return None
    return path


def _load_quietly(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        return load_json(path)
    except (OSError, ValueError):
        return None


def _failure_message(outcome: Any, result: DbtRunResult, sink: _invoke.EventSink, recorded: bool = False) -> str:
    """dbt's own explanation: its exception, else the failed nodes with dbt's messages.

    With ``recorded`` (each node has its own task run, whose Failed state holds dbt's
    message) the failed nodes are named without repeating their messages.
    """
    if outcome.exception is not None:
        text = str(outcome.exception).strip()
        return text or type(outcome.exception).__name__
    failed = result.failed_nodes
    if failed:
        skipped = len(result.skipped_nodes)
        head = f"{len(failed)} of {len(result.nodes)} node(s) failed" + (f", {skipped} skipped" if skipped else "")
        if recorded:
            names = ", ".join(f"{n.unique_id} ({n.status})" for n in failed)
            return f"{head}: {names}; dbt's message is in each failed node's task run"
        details = "; ".join(f"{n.unique_id} ({n.status}): {(n.message or '').strip() or 'no message'}" for n in failed)
        return f"{head}: {details}"
    if sink.errors:
        return "\n".join(sink.errors[-5:])
    return "dbt reported no success (see the run logs)"
