"""``@flow``: a plain function whose run, and every task it calls, is orchestrated."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import typing
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from plait._callables import Signature, check_name_template, jsonable, new_id, render_name, run_name
from plait._context import FlowRunContext, flow_run_var, run_tags, task_run_var
from plait._engine import drive_async, drive_sync, flow_steps, root_cause
from plait._hooks import HookMethods, with_hooks
from plait._options import FlowOptions, build_options
from plait._runs import FlowRun
from plait.futures import iter_futures, resolve_futures
from plait.states import State, StateType

__all__ = ["Flow", "flow"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Flow(HookMethods, Generic[P, R]):
    """A function whose calls become recorded flow runs. Build with ``@flow``."""

    options: FlowOptions

    def __init__(self, fn: Callable[P, R], options: FlowOptions) -> None:
        if not callable(fn):
            raise TypeError(f"@flow decorates a function, got {fn!r}")
        self.fn = fn
        self.options = options
        self.name = options.name or fn.__name__.replace("_", "-")
        self.description = options.description or inspect.getdoc(fn)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = Signature(fn)
        check_name_template(options.flow_run_name, self.signature, f"flow {self.name!r}", "flow_run_name")
        functools.update_wrapper(self, fn)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        """``@flow`` on a method: ``obj.run(x)`` calls the flow with ``obj`` first (and, under
        ``@classmethod``, the class); looked up on the class itself, the flow as it is."""
        if instance is None:
            return self
        return _BoundFlow(self, instance)

    def with_options(self, **changes: Any) -> Flow[P, R]:
        """A copy of this flow with some options replaced (validated like the decorator)."""
        return Flow(self.fn, build_options(FlowOptions, self.options, changes))

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"

    # -- parameters, deployments ------------------------------------------------------------
    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the flow's parameters, built by pydantic from its signature.

        An object schema (``properties``, ``required``, ``$defs``) named after the
        parameters, with their annotated types and JSON-serializable defaults; what
        deployments store and run forms are drawn from. Parameters whose type has no JSON
        schema accept any value; ``*args`` is left out, ``**kwargs`` allows other names.
        """
        import copy

        return copy.deepcopy(_parameter_models(self).schema)

    def check_parameters(self, parameters: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
        """``parameters`` validated against the signature, converted to the annotated types.

        Validation is pydantic's (lax mode: ``"3"`` is accepted for an ``int``).

        Args:
            parameters: Keyword arguments by name.
            partial: Allow required parameters to be missing (deployment defaults, which a
                run completes).

        Returns:
            The given parameters (and, unless ``partial``, the defaults of the others),
            with validated values.

        Raises:
            ParameterBindError: A name the flow does not take, a value of the wrong type
                or (unless ``partial``) a missing required parameter; the message names
                each parameter.
        """
        return _parameter_models(self).check(parameters, partial)

    def deploy(self, name: str, **options: Any) -> dict[str, Any]:
        """Save a deployment of this flow, run by a worker of ``work_pool``.

        The entrypoint is this flow's file (absolute path) and the name it has there; see
        ``plait.deployments.deploy`` for the options (``work_pool``, ``cron``,
        ``interval``, ``rrule``, ``parameters``, ``storage_block``...).

        Returns:
            The saved deployment (with ``outcome``: created, updated or unchanged).
        """
        from plait.deployments import deploy

        return deploy(self, name, **options)

    def serve(self, name: str | None = None, **options: Any) -> Any:
        """Run this flow's scheduled and requested runs from this process, no worker needed.

        Saves a deployment without a work pool (``name`` defaults to the flow's name), then
        runs each of its runs in a subprocess until Ctrl-C or SIGTERM: this is
        ``plait.worker.serve(self, name=name, **options)``. Options: the deployment's
        (``cron``, ``interval``, ``rrule``, ``parameters``, ``tags``...) and the loop's
        (``limit``, ``poll_interval``...). Keep the call under
        ``if __name__ == "__main__":``: each run imports the flow's file again.

        Returns:
            How many runs ended in each final state type.
        """
        from plait.worker import serve

        return serve(self, name=name, **options)

    def entrypoint(self) -> str:
        """``"/absolute/path/to/file.py:attribute"``: where a worker finds this flow.

        Raises:
            PlaitError: The flow was not defined in a file (an interactive session).
        """
        from plait.exceptions import PlaitError

        try:
            source = inspect.getsourcefile(inspect.unwrap(self.fn))
        except TypeError:
            source = None
        if not source or not Path(source).is_file():
            raise PlaitError(
                f"flow {self.name!r} was not defined in a file, so no worker can load it; "
                "define it in a .py file and deploy it from there"
            )
        module = sys.modules.get(getattr(self.fn, "__module__", "") or "")
        names = sorted(k for k, v in vars(module).items() if v is self) if module is not None else []
        return f"{Path(source).resolve()}:{names[0] if names else self.fn.__name__}"

    # Typing as for Task.__call__: a call is checked against the function's signature unless
    # it passes ``return_state=`` (mypy allows no keyword beside P.args/P.kwargs); an async
    # flow is a ``Flow[P, Coroutine[Any, Any, R]]`` whose call gives the coroutine.
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(
        self: Flow[P, Coroutine[Any, Any, T]], *args: Any, return_state: Literal[True], **kwargs: Any
    ) -> Coroutine[Any, Any, State]: ...
    @overload
    def __call__(self, *args: Any, return_state: Literal[True], **kwargs: Any) -> State: ...
    @overload
    def __call__(self, *args: Any, return_state: Literal[False], **kwargs: Any) -> R: ...
    @overload
    def __call__(self, *args: Any, return_state: bool, **kwargs: Any) -> Any: ...
    # `Any` for the keyword: the first overload's P.kwargs may name it with any type
    def __call__(self, *args: Any, return_state: Any = False, **kwargs: Any) -> Any:
        """Run the flow; return its value, or raise the exception that failed it.

        With ``return_state=True`` the final State is returned instead. An async flow
        returns an awaitable.
        """
        steps = self._prepare(args, kwargs)
        if self.is_async:
            return self._call_async(steps, return_state)
        return _finish(drive_sync(steps), return_state)

    async def _call_async(self, steps: Any, return_state: bool) -> Any:
        return _finish(await drive_async(steps), return_state)

    def _prepare(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from plait._logging import install_print_capture, setup_logging
        from plait._recording import current_recorder
        from plait.settings import get_settings
        if self.options.validate_parameters:
            parameters = self.signature.bind(f"flow {self.name!r}", args, kwargs)
            if self.signature.annotated:  # coerced to the type hints ("3" -> 3), or refused
                parameters = _parameter_models(self).coerce(parameters)
        else:
            parameters = dict(kwargs, **{f"arg{i}": a for i, a in enumerate(args)})
        settings = get_settings()
        recorder = current_recorder()  # opens the database now: a bad URL fails before any work
        setup_logging()
        log_prints = bool(self.options.log_prints)
        if log_prints:
            install_print_capture()
        parent = flow_run_var.get()
        parent_task = task_run_var.get()
        if parent is not None and self.options.log_prints is None:
            log_prints = parent.log_prints
        is_top = parent is None and parent_task is None
        # infrastructure (e.g. the Process block) picks the id of the run it launches
        preset_id = os.environ.pop("PLAIT_FLOW_RUN_ID", None) if is_top else None
        if preset_id:
            _refuse_ended_run(recorder, preset_id)
        run = FlowRun(
            id=preset_id or new_id(),
            flow_name=self.name,
            name=(render_name(self.options.flow_run_name, parameters, f"flow {self.name!r}", "flow_run_name")
                  if self.options.flow_run_name else run_name()),
            parameters={k: jsonable(v) for k, v in parameters.items()},
            state=State(StateType.PENDING),
            tags=run_tags(self.options.tags),
            parent_flow_run_id=parent.flow_run.id if parent else None,
            parent_task_run_id=parent_task.task_run.id if parent_task else None,
        )
        recorder.add_flow_run(run)
        recorder.add_state(run, run.state)
        ctx = FlowRunContext(
            flow=self,
            flow_run=run,
            parameters=parameters,
            task_runner=self.options.task_runner.duplicate() if self.options.task_runner else _default_runner(settings),
            recorder=recorder,
            log_prints=log_prints,
            persist_results=(
                settings.persist_results if self.options.persist_result is None else self.options.persist_result
            ),
        )
        call_args, call_kwargs = (
            self.signature.call_arguments(parameters) if self.options.validate_parameters else (args, kwargs)
        )
        steps = flow_steps(self, run, ctx, call_args, call_kwargs, is_top=is_top)
        return with_hooks(steps, self, run) if self.options.has_hooks else steps

    # -- used by the engine ----------------------------------------------------------------
    def settle_return(self, value: Any, ctx: FlowRunContext) -> tuple[Any, BaseException | None]:
        """Decide the flow's value and failure once its body returned.

        Futures in the return value are resolved; a returned failed State fails the flow;
        so does any submitted task run that failed without its failure being looked at.
        """
        try:
            if isinstance(value, State):
                if not value.is_completed():
                    return None, root_cause(value.result(raise_on_failure=False))
                value = value.result()
            elif any(True for _ in iter_futures(value)):
                value = resolve_futures(value)
        except Exception as exc:
            return None, root_cause(exc)
        for future in ctx.futures:
            if not future._observed and not future.task_run.state.is_completed():
                return None, root_cause(future.task_run.state.result(raise_on_failure=False))
        return value, None

    def run_logger(self, run: FlowRun) -> Any:
        from plait._logging import run_logger_for

        return run_logger_for(run.id, None, f"Flow run {run.name!r}")


class _ParameterModels:
    """Two pydantic models of a flow's signature: one as declared, one with every parameter
    optional (for partial checks); parameters are aliases, so any name works (``json``,
    ``model_config``, ``_private``)."""

    def __init__(self, owner: Flow[..., Any]) -> None:
        from pydantic import ConfigDict, Field, create_model

        self.owner = owner.name
        sig = owner.signature.sig
        try:
            hints = typing.get_type_hints(owner.fn, include_extras=True)
        except Exception:  # one unresolvable forward reference: resolve the others one by one
            hints = {name: _evaluated(owner.fn, p.annotation) for name, p in sig.parameters.items()}
        extra: Literal["allow", "forbid"] = "forbid"
        full: dict[str, Any] = {}
        partial: dict[str, Any] = {}
        self.fields: dict[str, str] = {}  # parameter name -> model field
        self.expects: dict[str, str] = {}  # parameter name -> its type hint, as text
        for i, (name, param) in enumerate(sig.parameters.items()):
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                extra = "allow"
                continue
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            annotation = _schema_type(hints.get(name, param.annotation))
            title = name.strip("_").replace("_", " ").title() or name
            required = param.default is inspect.Parameter.empty
            default = ... if required else param.default
            full[f"p{i}"] = (annotation, Field(default, alias=name, title=title))
            partial[f"p{i}"] = (annotation, Field(None if required else default, alias=name, title=title))
            self.fields[name] = f"p{i}"
            self.expects[name] = _type_text(annotation)
        self.extra = extra
        config = ConfigDict(extra=extra, title="Parameters", arbitrary_types_allowed=True)
        self.full = create_model("Parameters", __config__=config, **full)
        self.partial = create_model("PartialParameters", __config__=config, **partial)
        self.secret_names = owner.signature.secret_names
        self._schema: dict[str, Any] | None = None

    @property
    def schema(self) -> dict[str, Any]:
        if self._schema is None:
            import warnings

            with warnings.catch_warnings():  # a default with no JSON form is left out of the schema
                warnings.simplefilter("ignore")
                self._schema = self.full.model_json_schema()
        return self._schema

    def coerce(self, bound: dict[str, Any]) -> dict[str, Any]:
        """Bound arguments (``Signature.bind``) with the named parameters' values validated
        and converted to their type hints; ``*args``/``**kwargs`` entries are left as given.

        Raises:
            ParameterBindError: Naming each bad parameter, the type it expects and the value.
        """
        from pydantic import ValidationError

        from plait.exceptions import ParameterBindError

        given = {name: bound[name] for name in self.fields if name in bound}
        try:
            instance = self.full.model_validate(given)
        except ValidationError as exc:
            raise ParameterBindError(
                f"flow {self.owner!r} was called with parameters that do not fit its type hints: "
                + "; ".join(self._problems(exc, show_values=True))
                + ". Pass values of those types (or @flow(validate_parameters=False) to skip the check)"
            ) from None
        out = dict(bound)
        for name in given:
            out[name] = getattr(instance, self.fields[name])
        return out

    def check(self, parameters: Mapping[str, Any], partial: bool) -> dict[str, Any]:
        from pydantic import ValidationError

        from plait.exceptions import ParameterBindError

        if not isinstance(parameters, Mapping):
            raise ParameterBindError(
                f"flow {self.owner!r}: parameters must be a mapping of names to values, "
                f"got {type(parameters).__name__}"
            )
        model = self.partial if partial else self.full
        try:
            instance = model.model_validate(dict(parameters))
        except ValidationError as exc:
            raise ParameterBindError(f"flow {self.owner!r}: " + "; ".join(self._problems(exc))) from None
        names = [n for n in self.fields if n in parameters] if partial else list(self.fields)
        out = {name: getattr(instance, self.fields[name]) for name in names}
        out.update(instance.model_extra or {})
        return out

    def _problems(self, exc: Any, show_values: bool = False) -> list[str]:
        import difflib

        problems = []
        for err in exc.errors(include_url=False, include_input=show_values):
            loc = [str(part) for part in err.get("loc", ())]
            name = loc[0] if loc else "(parameters)"
            where = ".".join(loc)
            if err.get("type") == "extra_forbidden":
                close = difflib.get_close_matches(name, list(self.fields), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"it takes: {', '.join(self.fields) or '(none)'}"
                problems.append(f"unknown parameter {name!r} ({hint})")
            elif err.get("type") == "missing" and len(loc) == 1:
                problems.append(f"parameter {name!r} is required")
            else:
                message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
                if show_values and loc and name in self.expects:
                    problems.append(f"parameter {where!r} expects {self.expects[name]}, got "
                                    f"{self._shown(name, err.get('input'))} ({message})")
                else:
                    problems.append(f"parameter {where!r}: {message}")
        return problems

    def _shown(self, name: str, value: Any) -> str:
        """A bad value as an error shows it: never a secret parameter's, masked, shortened."""
        if name in self.secret_names:
            return f"a value of type {type(value).__name__} (not shown: a secret parameter)"
        from plait._masking import mask

        text = mask(repr(value))
        return (text if len(text) <= 80 else text[:77] + "...") + f" ({type(value).__name__})"


def _evaluated(fn: Callable[..., Any], annotation: Any) -> Any:
    """An annotation written as text, evaluated in the function's module (Any when it
    cannot be: a name local to a function, a typo)."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, getattr(fn, "__globals__", {}))  # noqa: S307 - the function's own annotation
    except Exception:
        return Any


def _type_text(annotation: Any) -> str:
    """``int``, ``list[str]``, ``Optional[datetime]``: a type hint as a reader writes it."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    return str(annotation).replace("typing.", "")


def _schema_type(annotation: Any) -> Any:
    """The annotation, or Any when it is missing, unresolved or has no JSON schema (an
    arbitrary class: such a parameter is not checked)."""
    if annotation is inspect.Parameter.empty or isinstance(annotation, str):
        return Any
    import warnings

    from pydantic import TypeAdapter

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            TypeAdapter(annotation).json_schema()
    except Exception:
        return Any
    return annotation


def _parameter_models(owner: Flow[..., Any]) -> _ParameterModels:
    models = owner.__dict__.get("_plait_parameter_models")
    if models is None:
        models = _ParameterModels(owner)
        owner.__dict__["_plait_parameter_models"] = models
    return models


def _refuse_ended_run(recorder: Any, flow_run_id: str) -> None:
    """A launcher's ``PLAIT_FLOW_RUN_ID`` must name a new run or one still waiting to run:
    a run that already ended keeps its history."""
    stored = recorder.stored_flow_run_state(flow_run_id)
    if stored is not None and stored.is_final:
        from plait.exceptions import PlaitError

        raise PlaitError(
            f"PLAIT_FLOW_RUN_ID={flow_run_id!r} names a flow run that already ended ({stored.title}); "
            "plait will not overwrite its history. Unset PLAIT_FLOW_RUN_ID to start a new flow run, "
            "or give the id of a run that has not ended yet."
        )


class _BoundFlow:
    """A flow looked up on an instance (or, under ``@classmethod``, a class)."""

    __slots__ = ("flow", "instance")

    def __init__(self, flow: Flow[..., Any], instance: Any) -> None:
        self.flow, self.instance = flow, instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.flow(self.instance, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # name, options, with_options...
        return getattr(self.flow, name)

    def __repr__(self) -> str:
        return f"{self.flow!r} bound to {type(self.instance).__name__}"


def _default_runner(settings: Any) -> Any:
    """Prefect's default: submitted and mapped tasks run concurrently on threads (direct calls
    stay in the calling thread)."""
    from plait.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(settings.task_runner_max_workers)


def _finish(state: State, return_state: bool) -> Any:
    if return_state:
        return state
    return state.result()


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...
@overload
def flow(*, name: str | None = ..., **options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]: ...
def flow(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a function a flow. Options: see ``plait.FlowOptions`` (retries, task_runner, ...)."""
    flow_options = build_options(FlowOptions, None, options)
    if fn is not None:
        return Flow(fn, flow_options)
    return lambda f: Flow(f, flow_options)


