"""Run logs: ``get_run_logger()``, storing log lines with their run, capturing print().

Every line logged through a run logger goes to the recorder (stored with the flow run and
task run ids) and, unless switched off, to stderr.
"""

from __future__ import annotations

import builtins
import io
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from plait._context import flow_run_var, task_run_var
from plait._masking import RegisteredSecrets
from plait._masking import mask as scrub
from plait._masking import register_secret as register_secret  # re-exported: plait.register_secret

RUN_LOGGER_NAME = "plait.runs"
_setup_lock = threading.Lock()
_configured_for: tuple[str, bool, bool] | None = None  # (logging_level, log_to_console, propagate) set up


class RunLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """Adds the run ids and a label ("Task run 'x-0'") to every record."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def run_logger_for(flow_run_id: str | None, task_run_id: str | None, label: str) -> RunLoggerAdapter:
    setup_logging()
    return RunLoggerAdapter(
        logging.getLogger(RUN_LOGGER_NAME),
        {"flow_run_id": flow_run_id, "task_run_id": task_run_id, "run_label": label},
    )


def get_run_logger() -> RunLoggerAdapter:
    """The logger of the current task run (or flow run); its lines are stored with the run."""
    task_ctx = task_run_var.get()
    if task_ctx is not None:
        run = task_ctx.task_run
        return run_logger_for(run.flow_run_id, run.id, f"Task run {run.name!r}")
    flow_ctx = flow_run_var.get()
    if flow_ctx is not None:
        flow_run = flow_ctx.flow_run
        return run_logger_for(flow_run.id, None, f"Flow run {flow_run.name!r}")
    from plait.exceptions import PlaitError

    raise PlaitError(
        "get_run_logger() was called outside a flow or task run; call it inside a function "
        "decorated with @flow or @task, or use logging.getLogger(...) elsewhere"
    )


class _QuietErrors:
    """A broken log call (bad format arguments) is reported without echoing its
    arguments, which may hold secrets; logging's default handler prints them raw."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if logging.raiseExceptions and sys.stderr:
            exc = sys.exc_info()[1]
            sys.stderr.write(
                f"plait: could not format a log line from {record.pathname}:{record.lineno} "
                f"({type(exc).__name__}); message template: {scrub(str(record.msg))!r}\n"
            )


class _ConsoleHandler(_QuietErrors, logging.StreamHandler[io.TextIOBase]):
    pass


class RecorderHandler(_QuietErrors, logging.Handler):
    """Hands each run log record to the recorder (never blocks on the database)."""

    def emit(self, record: logging.LogRecord) -> None:
        flow_run_id = getattr(record, "flow_run_id", None)
        task_run_id = getattr(record, "task_run_id", None)
        if flow_run_id is None and task_run_id is None:
            return
        try:
            message = record.getMessage()
            if record.exc_info and record.levelno >= logging.ERROR:
                message = message + "\n" + _format_exception(record.exc_info)
            current_run_recorder().add_log(
                flow_run_id, task_run_id, record.levelno, record.name, scrub(message),
                datetime.fromtimestamp(record.created, UTC),
            )
        except Exception:  # logging must never break a run
            self.handleError(record)


def current_run_recorder() -> Any:
    """The recorder of the run this thread is in (cheap), else the process-wide one."""
    task_ctx = task_run_var.get()
    ctx = task_ctx.flow_context if task_ctx is not None else flow_run_var.get()
    if ctx is not None:
        return ctx.recorder
    from plait._recording import current_recorder

    return current_recorder()


def _format_exception(exc_info: Any) -> str:
    import traceback

    return "".join(traceback.format_exception(*exc_info)).rstrip()


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        label = getattr(record, "run_label", None) or record.name
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        text = f"{stamp} | {record.levelname:<7} | {label} - {record.getMessage()}"
        if record.exc_info and record.levelno >= logging.ERROR and (
            logging.getLogger("plait").isEnabledFor(logging.DEBUG)
        ):
            text += "\n" + _format_exception(record.exc_info)
        return scrub(text)


# Secret values are registered by whoever loads them (the blocks layer); any log line
# containing one is stored and shown with *** instead. The rules live in plait._masking:
# `scrub` is its one masking function under the name this module always used.
_SECRETS = RegisteredSecrets()  # the registry as a list, for code that still reads it


# Under pytest (plait's pytest plugin sets it) records also go up to the root logger, where
# pytest's caplog and its report sections take them, console or not.
propagate_to_root = False


def setup_logging() -> None:
    """Configure plait's loggers once per settings change (cheap when nothing changed)."""
    global _configured_for
    from plait.settings import get_settings

    settings = get_settings()
    key = (settings.logging_level, settings.log_to_console, propagate_to_root)
    if key == _configured_for:
        return
    with _setup_lock:
        run_logger = logging.getLogger(RUN_LOGGER_NAME)
        plait_logger = logging.getLogger("plait")
        for handler in list(run_logger.handlers) + list(plait_logger.handlers):
            if getattr(handler, "_plait", False):
                handler.close()
                run_logger.removeHandler(handler)
                plait_logger.removeHandler(handler)
        run_logger.setLevel(settings.logging_level)
        recorder_handler = RecorderHandler()
        recorder_handler._plait = True  # type: ignore[attr-defined]
        run_logger.addHandler(recorder_handler)
        if settings.log_to_console:
            console = _ConsoleHandler(_StderrProxy())
            console.setFormatter(ConsoleFormatter())
            console._plait = True  # type: ignore[attr-defined]
            plait_logger.addHandler(console)
        # plait's console handler replaces the root's; without it plait's records go up again
        plait_logger.propagate = propagate_to_root or not settings.log_to_console
        _configured_for = key


def reset_logging() -> None:
    """Undo ``configure_logging``: plait's handlers removed, records propagate to the root."""
    global _configured_for
    with _setup_lock:
        for name in (RUN_LOGGER_NAME, "plait"):
            target = logging.getLogger(name)
            for handler in list(target.handlers):
                if getattr(handler, "_plait", False):
                    handler.close()
                    target.removeHandler(handler)
        logging.getLogger("plait").propagate = True
        _configured_for = None


class _StderrProxy(io.TextIOBase):
    """Writes to whatever sys.stderr is now (pytest and users swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


# -- print() capture -----------------------------------------------------------------------
_original_print = builtins.print
_print_installed = False


def install_print_capture() -> None:
    """Route print() of runs with log_prints=True into their run logs (installed once)."""
    global _print_installed
    if _print_installed:
        return
    _print_installed = True
    builtins.print = _capturing_print


def _capturing_print(
    *args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    task_ctx = task_run_var.get()
    flow_ctx = flow_run_var.get()
    wants = task_ctx.log_prints if task_ctx is not None else (flow_ctx.log_prints if flow_ctx else False)
    if not wants or (file is not None and file not in (sys.stdout, sys.stderr)):
        _original_print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    message = (sep if sep is not None else " ").join(str(a) for a in args)
    get_run_logger().info(message, extra={"printed": True})
