"""plait: plain Python functions as orchestrated flows and tasks.

    from plait import flow, task

    @task(retries=2)
    def extract() -> list[int]: ...

    @flow
    def etl() -> None:
        load(transform(extract()))
"""

from plait import results as _results
from plait import runtime
from plait._context import tags
from plait._limits import concurrency, rate_limit, rate_limit_async
from plait._logging import get_run_logger, register_secret
from plait._masking import mask_secrets, mask_url
from plait._options import FlowOptions, TaskOptions
from plait._pause import pause_flow_run
from plait._process_runner import ProcessPoolTaskRunner
from plait.cache_policies import FLOW_PARAMETERS, INPUTS, NO_CACHE, TASK_SOURCE
from plait.exceptions import (
    CancelledRun,
    CrashedRun,
    InvalidOptions,
    ParameterBindError,
    PlaitError,
    SerializationError,
    UpstreamFailed,
)
from plait.flows import Flow, flow
from plait.futures import PlaitFuture, PlaitFutureList, allow_failure, as_completed, quote, wait
from plait.states import (
    Cached,
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Paused,
    Pending,
    Retrying,
    Running,
    Scheduled,
    State,
    StateType,
)
from plait.task_runners import InProcessTaskRunner, TaskRunner, ThreadPoolTaskRunner
from plait.tasks import Task, task, unmapped
from plait.transactions import get_transaction, transaction

__version__ = "0.1.0"


def _find_scheme(scheme: str) -> None:
    """plait.results may not import the plugin layer above it, and importing that layer
    costs every ``import plait`` tens of milliseconds; the package, above both, connects them
    when a URL first names a scheme nobody registered (importing plait.plugins installs the
    plugins' own finder in place of this one)."""
    from plait import plugins  # noqa: F401

    finder = _results._SCHEME_FACTORIES.get("*")
    if finder is not None and finder is not _find_scheme:
        finder(scheme)


_results.register_storage_scheme("*", _find_scheme)

__all__ = [
    "ProcessPoolTaskRunner",
    "quote",
    "as_completed",
    "allow_failure",
    "Cached",
    "Cancelled",
    "CancelledRun",
    "Cancelling",
    "Completed",
    "Crashed",
    "CrashedRun",
    "FLOW_PARAMETERS",
    "Failed",
    "Flow",
    "FlowOptions",
    "INPUTS",
    "InProcessTaskRunner",
    "InvalidOptions",
    "NO_CACHE",
    "ParameterBindError",
    "Paused",
    "Pending",
    "PlaitError",
    "PlaitFuture",
    "PlaitFutureList",
    "Retrying",
    "Running",
    "Scheduled",
    "SerializationError",
    "State",
    "StateType",
    "TASK_SOURCE",
    "Task",
    "TaskOptions",
    "TaskRunner",
    "ThreadPoolTaskRunner",
    "UpstreamFailed",
    "concurrency",
    "flow",
    "get_run_logger",
    "mask_secrets",
    "mask_url",
    "pause_flow_run",
    "rate_limit",
    "rate_limit_async",
    "register_secret",
    "runtime",
    "tags",
    "transaction",
    "get_transaction",
    "task",
    "unmapped",
    "wait",
]

# Exported classes are plait's public names: their repr, docs and pickles say ``plait.X``
# rather than the private module they happen to live in.
for _name in __all__:
    _member = globals()[_name]
    if isinstance(_member, type):
        _member.__module__ = "plait"
del _name, _member
