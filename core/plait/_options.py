"""Options of flows and tasks: one typed, validated object each.

``@task(retries=2)`` builds a ``TaskOptions``; ``.with_options(...)`` replaces fields and
validates again. Every check runs at decoration time so a typo fails where it was written.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from plait.exceptions import InvalidOptions


def _check_bool(kind: str, name: str, value: Any, inherit: bool = False) -> None:
    """Refuse anything but True/False (and None where it means "inherit"): a string such as
    ``'no'`` or ``'false'`` is truthy, so accepting it would do the opposite of what it says."""
    if isinstance(value, bool) or (inherit and value is None):
        return
    allowed = "True, False or None (inherit)" if inherit else "True or False"
    if isinstance(value, str):
        got = f"the string {value!r}"
        hint = f"; pass {name}={_meant(value)} instead of a string" if _meant(value) else "; pass True or False"
    else:
        got, hint = f"{value!r} ({type(value).__name__})", "; pass True or False"
    raise InvalidOptions(f"{kind} option {name} must be {allowed}, got {got}{hint}")


def _meant(text: str) -> str:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "y", "on"):
        return "True"
    if word in ("0", "false", "no", "n", "off", ""):
        return "False"
    return ""


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Options shared by flows and tasks.

    Attributes:
        name: Display name; defaults to the function's name.
        description: Defaults to the function's docstring.
        retries: How many times a failed run is tried again (>= 0).
        retry_delay_seconds: Seconds before each retry; a list gives one delay per retry
            (the last one repeats), e.g. ``[1, 10, 60]`` for backoff; or a function of the
            number of retries giving that list (``plait.tasks.exponential_backoff(10)``).
        retry_jitter_factor: Randomise each delay, keeping its mean, up to ``delay * (1 +
            factor)`` (>= 0).
        retry_condition: ``fn(task_or_flow, run, state) -> bool``; return False to stop retrying.
        timeout_seconds: Fail the attempt when it runs longer than this.
        tags: Labels stored with every run.
        log_prints: Store ``print()`` output as run logs.
        persist_result: Write the result to result storage (default: on when caching is on).
        result_storage: Path, URL (``file://``, ``s3://`` once a collection provides it) or
            an object with ``read_path``/``write_path``.
        result_serializer: ``"json"`` or ``"pickle"``.
        encrypt_result: Encrypt the persisted result at rest with the blocks' key (default:
            the flow's option, then the ``encrypt_results`` setting). Results holding
            secrets (``SecretStr``, blocks with secret fields) are encrypted regardless.
        on_completion, on_failure, on_cancellation, on_crashed, on_running: State hooks,
            each a callable ``fn(flow_or_task, run, state)`` or a list of them
            (``plait._hooks``).
    """

    name: str | None = None
    description: str | None = None
    retries: int = 0
    retry_delay_seconds: float | tuple[float, ...] = 0.0
    retry_jitter_factor: float | None = None
    retry_condition: Callable[..., bool] | None = None
    timeout_seconds: float | None = None
    tags: tuple[str, ...] = ()
    log_prints: bool | None = None
    persist_result: bool | None = None
    result_storage: Any = None
    result_serializer: str | None = None
    encrypt_result: bool | None = None

    on_completion: tuple[Callable[..., Any], ...] = ()
    on_failure: tuple[Callable[..., Any], ...] = ()
    on_cancellation: tuple[Callable[..., Any], ...] = ()
    on_crashed: tuple[Callable[..., Any], ...] = ()
    on_running: tuple[Callable[..., Any], ...] = ()

    def __post_init__(self) -> None:
        kind = type(self).__name__.replace("Options", "").lower()
        set_ = object.__setattr__
        for name in HOOK_OPTIONS:
            set_(self, name, _check_hooks(kind, name, getattr(self, name)))
        for name in ("log_prints", "persist_result", "encrypt_result"):
            _check_bool(kind, name, getattr(self, name), inherit=True)
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise InvalidOptions(f"{kind} retries must be a whole number >= 0, got {self.retries!r}")
        delay: Any = self.retry_delay_seconds  # as given: a number, a list or a function
        if callable(delay):  # e.g. exponential_backoff(10): called with the number of retries
            delay = list(delay(self.retries)) if self.retries else 0.0
        delays = tuple(delay) if isinstance(delay, (list, tuple)) else (delay,)
        if not delays or any(isinstance(d, bool) or not isinstance(d, (int, float)) or d < 0 for d in delays):
            raise InvalidOptions(
                f"{kind} retry_delay_seconds must be a number >= 0 or a non-empty list of them, got {delay!r}"
            )
        set_(
            self,
            "retry_delay_seconds",
            tuple(float(d) for d in delays) if isinstance(delay, (list, tuple)) else float(delay),
        )
        if self.retry_jitter_factor is not None and (
            not isinstance(self.retry_jitter_factor, (int, float)) or self.retry_jitter_factor < 0
        ):
            raise InvalidOptions(f"{kind} retry_jitter_factor must be >= 0, got {self.retry_jitter_factor!r}")
        if self.retry_condition is not None and not callable(self.retry_condition):
            raise InvalidOptions(
                f"{kind} retry_condition must be a callable (task, run, state) -> bool, got {self.retry_condition!r}"
            )
        if self.timeout_seconds is not None and (
            isinstance(self.timeout_seconds, bool)
            or not isinstance(self.timeout_seconds, (int, float))
            or self.timeout_seconds <= 0
        ):
            raise InvalidOptions(f"{kind} timeout_seconds must be a number > 0, got {self.timeout_seconds!r}")
        given_tags: Any = self.tags  # as passed in the options: one string or any iterable of them
        tags = (given_tags,) if isinstance(given_tags, str) else tuple(given_tags or ())
        if not all(isinstance(t, str) for t in tags):
            raise InvalidOptions(f"{kind} tags must be strings, got {self.tags!r}")
        set_(self, "tags", tags)
        if self.result_serializer is not None:
            from plait.results import SERIALIZERS

            if self.result_serializer not in SERIALIZERS:
                raise InvalidOptions(
                    f"unknown result_serializer {self.result_serializer!r}; use one of: "
                    + ", ".join(sorted(SERIALIZERS))
                )
        storage = self.result_storage
        if storage is not None and not isinstance(storage, (str, Path)) and not (
            hasattr(storage, "read_path") and hasattr(storage, "write_path")
        ):
            raise InvalidOptions(
                f"{kind} result_storage must be a path, a URL or an object with read_path/write_path, "
                f"got {type(storage).__name__}"
            )

    @property
    def has_hooks(self) -> bool:
        return bool(self.on_completion or self.on_failure or self.on_cancellation or self.on_crashed
                    or self.on_running)

    def retry_delay(self, retry_number: int) -> float:
        """Delay before retry ``retry_number`` (1-based), before jitter."""
        delay = self.retry_delay_seconds
        if isinstance(delay, tuple):
            return delay[min(retry_number, len(delay)) - 1]
        return delay


@dataclass(frozen=True, slots=True)
class TaskOptions(RunOptions):
    """Task options; see ``RunOptions`` plus caching.

    Attributes:
        cache_policy: A ``CachePolicy`` (``INPUTS``, ``TASK_SOURCE``, ``FLOW_PARAMETERS``,
            ``NO_CACHE``, or a sum of them like ``INPUTS + TASK_SOURCE``) or its name.
        cache_key_fn: ``fn(context, parameters) -> str | None``; replaces the policy.
        cache_expiration: How long a cached result stays valid (timedelta or seconds).
        refresh_cache: Run anyway and overwrite the cached result.
        task_run_name: Each task run's name: a template of its parameters
            (``"load-{table}"``) or a function (no arguments, or the parameters by name as
            a dict) returning it; default ``<task>-<n>``.
        result_storage_key: Where the result is written in result storage: a template of
            ``parameters``, ``flow_run`` and ``task_run`` (``"sales/{parameters[day]}.json"``,
            ``"{flow_run.name}/{task_run.name}"``). As in Prefect it is also the cache key:
            a result already at the key is read instead of running (``refresh_cache=True``
            runs anyway).
        cache_result_in_memory: False: keep only a reference to the persisted result once
            the run ends (futures read it back when asked), so a large value is not held
            for the rest of the flow. Implies persisting the result.
        on_commit, on_rollback: Transaction hooks ``fn(txn)``, called when the
            ``plait.transaction()`` a completed run of the task was staged in commits or
            rolls back (``plait.transactions``).
    """

    cache_policy: Any = None
    task_run_name: str | Callable[..., str] | None = None
    cache_key_fn: Callable[..., str | None] | None = None
    cache_expiration: timedelta | None = None
    refresh_cache: bool = False
    result_storage_key: str | None = None
    cache_result_in_memory: bool = True
    on_commit: tuple[Callable[..., Any], ...] = ()
    on_rollback: tuple[Callable[..., Any], ...] = ()

    def __post_init__(self) -> None:
        RunOptions.__post_init__(self)
        for name in ("on_commit", "on_rollback"):
            object.__setattr__(self, name, _check_hooks("task", name, getattr(self, name), "fn(txn)"))
        _check_bool("task", "refresh_cache", self.refresh_cache)
        _check_run_name("task", "task_run_name", self.task_run_name)
        from plait.cache_policies import coerce_cache_policy

        policy = coerce_cache_policy(self.cache_policy)  # raises InvalidOptions on a bad one
        object.__setattr__(self, "cache_policy", policy)
        if self.cache_key_fn is not None and not callable(self.cache_key_fn):
            raise InvalidOptions(
                f"cache_key_fn must be a callable (context, parameters) -> str, got {self.cache_key_fn!r}"
            )
        expiration: object = self.cache_expiration  # as passed in the options: seconds are accepted too
        if isinstance(expiration, (int, float)) and not isinstance(expiration, bool):
            expiration = timedelta(seconds=expiration)
        if expiration is not None and (not isinstance(expiration, timedelta) or expiration.total_seconds() <= 0):
            raise InvalidOptions(
                f"cache_expiration must be a positive timedelta or seconds, got {self.cache_expiration!r}"
            )
        object.__setattr__(self, "cache_expiration", expiration)
        _check_bool("task", "cache_result_in_memory", self.cache_result_in_memory)
        key = self.result_storage_key
        if key is not None and not (isinstance(key, str) and key.strip()):
            raise InvalidOptions(
                f"result_storage_key must be a template string like \"sales/{{parameters[day]}}.json\", got {key!r}"
            )
        if self.persist_result is False and self.caches:
            raise InvalidOptions(
                "caching needs persisted results: remove persist_result=False or drop the "
                "cache_policy/cache_key_fn/result_storage_key"
            )
        if self.persist_result is False and not self.cache_result_in_memory:
            raise InvalidOptions(
                "cache_result_in_memory=False keeps only the persisted result: remove persist_result=False"
            )

    @property
    def caches(self) -> bool:
        return (self.cache_key_fn is not None or self.result_storage_key is not None
                or (self.cache_policy is not None and not self.cache_policy.is_none))


@dataclass(frozen=True, slots=True)
class FlowOptions(RunOptions):
    """Flow options; see ``RunOptions`` plus the task runner.

    Attributes:
        task_runner: Runs submitted tasks: ``ThreadPoolTaskRunner()`` (default, concurrent
            on threads), ``InProcessTaskRunner()`` (one at a time, in the flow's thread),
            ``ProcessPoolTaskRunner()``, or the name
            of a runner a collection registers (``"dask"``).
        validate_parameters: Refuse calls whose arguments do not bind to the signature,
            and convert values to their type hints.
        flow_run_name: Each flow run's name: a template of its parameters
            (``"report-{day:%Y-%m-%d}"``) or a function (no arguments, or the parameters by
            name as a dict) returning it; default: a random adjective-animal pair.
    """

    task_runner: Any = None
    validate_parameters: bool = True
    flow_run_name: str | Callable[..., str] | None = None

    def __post_init__(self) -> None:
        RunOptions.__post_init__(self)
        _check_bool("flow", "validate_parameters", self.validate_parameters)
        _check_run_name("flow", "flow_run_name", self.flow_run_name)
        runner = self.task_runner
        if isinstance(runner, str):  # task_runner="dask": a runner a plugin registers
            from plait import plugins

            cls = plugins.task_runner_class(runner)
            if cls is None:
                known = ", ".join(sorted(plugins.task_runner_names())) or "none"
                raise InvalidOptions(
                    f"no installed plugin provides the task runner {runner!r} (installed: {known}); install its "
                    f"collection (e.g. pip install plait-{runner}) or pass a TaskRunner"
                )
            runner = cls
        if runner is not None:
            from plait.task_runners import TaskRunner

            if isinstance(runner, type) and issubclass(runner, TaskRunner):
                object.__setattr__(self, "task_runner", runner())
            elif not isinstance(runner, TaskRunner):
                raise InvalidOptions(
                    f"task_runner must be a TaskRunner such as ThreadPoolTaskRunner(max_workers=4), got {runner!r}"
                )


def _check_run_name(kind: str, name: str, value: Any) -> None:
    if value is not None and not callable(value) and not (isinstance(value, str) and value):
        raise InvalidOptions(
            f"{kind} {name} must be a template string like \"load-{{table}}\" or a function returning "
            f"the name, got {value!r}"
        )


HOOK_OPTIONS = ("on_completion", "on_failure", "on_cancellation", "on_crashed", "on_running")


def _check_hooks(kind: str, name: str, value: Any, signature: str = "") -> tuple[Callable[..., Any], ...]:
    """The hooks of option ``name`` as a tuple: one callable or a list of them."""
    hooks = (value,) if callable(value) else tuple(value or ())
    for hook in hooks:
        if not callable(hook):
            raise InvalidOptions(f"{kind} {name} must be callables {signature or f'fn({kind}, run, state)'}, "
                                 f"got {hook!r}")
    return hooks


def build_options(cls: type[RunOptions], base: RunOptions | None, changes: dict[str, Any]) -> Any:
    """Make ``cls`` options from ``changes`` (over ``base``), naming unknown options."""
    known = {f.name for f in dataclasses.fields(cls)}
    for key in changes:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known options: {', '.join(sorted(known))}"
            raise InvalidOptions(f"unknown {cls.__name__.replace('Options', '').lower()} option {key!r}{hint}")
    if "tags" in changes and changes["tags"] is not None and not isinstance(changes["tags"], str):
        changes = {**changes, "tags": tuple(changes["tags"])}
    if base is None:
        return cls(**changes)
    return dataclasses.replace(base, **changes)


__all__ = ["RunOptions", "TaskOptions", "FlowOptions", "build_options", "HOOK_OPTIONS"]
