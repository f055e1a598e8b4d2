"""``Deployment``: what a deployment is, validated before anything is saved.

A deployment names a flow entrypoint and how its runs are made: parameters (checked
against the flow's signature), schedules, the work pool whose workers run it, limits, and
where the code comes from (the local ``path``, or a bundle in a storage block). It is saved
through the control plane (``plait.deployments._control``): the local store, or a plait
server when ``PLAIT_API_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from plait._automation_model import deployment_trigger_specs
from plait.deployments._schema import schema_problems
from plait.exceptions import PlaitError

if TYPE_CHECKING:
    from plait.flows import Flow

__all__ = ["Deployment", "DeploymentSchedule", "DeploymentError", "deployment_from_flow", "control_plane",
           "refuse_secret_parameters", "validation_message"]

_SCHEDULE_KEYS = {"cron", "interval", "anchor", "rrule", "timezone"}


class DeploymentError(PlaitError, ValueError):
    """A deployment that cannot be saved or run as described (the message says why)."""


def control_plane() -> Any:
    """The control plane: the local store, or the server ``PLAIT_API_URL`` names."""
    from plait.deployments._control import control_plane as plane

    return plane()


def _schedule_of(value: Any) -> Any:
    """A ``plait.schedules`` schedule from one, or from its description (a dict with one of
    ``cron``, ``interval``, ``rrule``, or a stored spec with ``kind``)."""
    from plait import schedules

    kinds = (schedules.CronSchedule, schedules.IntervalSchedule, schedules.RRuleSchedule)
    if isinstance(value, kinds):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"a schedule is a cron, interval or rrule schedule or a mapping, got {type(value).__name__}")
    spec = {k: v for k, v in value.items() if v is not None}
    if "kind" in spec:
        return schedules.schedule_from_spec(dict(value))
    unknown = sorted(set(spec) - _SCHEDULE_KEYS)
    if unknown:
        raise ValueError(f"unknown schedule field(s) {', '.join(map(repr, unknown))}; "
                         "a schedule has cron, interval (+ anchor) or rrule, timezone, active and parameters")
    given = [k for k in ("cron", "interval", "rrule") if k in spec]
    if len(given) != 1:
        raise ValueError("a schedule needs exactly one of cron, interval or rrule"
                         + (f"; got {', '.join(given)}" if given else ""))
    zone = {"timezone": spec["timezone"]} if "timezone" in spec else {}
    if given == ["cron"]:
        if "anchor" in spec:
            raise ValueError("anchor belongs to interval schedules, not cron")
        return schedules.CronSchedule(cron=spec["cron"], **zone)
    if given == ["rrule"]:
        if "anchor" in spec:
            raise ValueError("anchor belongs to interval schedules; an rrule has its own DTSTART")
        return schedules.RRuleSchedule(rrule=spec["rrule"], **zone)
    return schedules.IntervalSchedule(interval=_seconds(spec["interval"]), anchor=_moment(spec.get("anchor")), **zone)


def _seconds(value: Any) -> Any:
    """An interval written as text (``"PT1H"``, ``"01:00:00"``, ``"3600"``) as a timedelta."""
    if not isinstance(value, str):
        return value
    from datetime import timedelta

    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(timedelta).validate_python(value.strip())
    except ValidationError:
        raise ValueError(f"interval {value!r} is not a duration; give seconds (3600), 'HH:MM:SS' or ISO 8601 "
                         "('PT1H')") from None


def _moment(value: Any) -> Any:
    """An anchor written as ISO 8601 text as a datetime (the schedule judges the rest)."""
    if not isinstance(value, str):
        return value
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"anchor {value!r} is not an ISO 8601 date and time, e.g. 2024-01-01T03:00:00") from None


class DeploymentSchedule(BaseModel):
    """One schedule of a deployment: when (cron, interval or rrule, with a timezone), whether
    it is active, and parameters its runs get on top of the deployment's.

    Built from a ``plait.schedules`` object or a mapping such as
    ``{"cron": "0 3 * * *", "timezone": "Europe/Paris", "parameters": {"full": True}}``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    schedule: Any
    active: bool = True
    parameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_description(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and "schedule" not in value:
            rest = {k: v for k, v in value.items() if k not in ("active", "parameters", "id", "position",
                                                                "deployment_id", "created")}
            out: dict[str, Any] = {"schedule": rest}
            if "active" in value:
                out["active"] = value["active"]
            if "parameters" in value:
                out["parameters"] = value["parameters"] if value["parameters"] is not None else {}
            return out
        if not isinstance(value, (Mapping, DeploymentSchedule)):
            return {"schedule": value}
        return value

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return _schedule_of(value)

    def to_spec(self) -> dict[str, Any]:
        """The stored form: ``kind``, ``cron``/``interval_seconds``/``anchor``/``rrule``,
        ``timezone``, ``active``, ``parameters``."""
        return {**self.schedule.to_spec(), "active": self.active, "parameters": dict(self.parameters)}


class Deployment(BaseModel):
    """A flow entrypoint plus how its runs are made; saved with ``apply()``.

    Attributes:
        name: The deployment's name; the full name is ``"<flow_name>/<name>"``.
        flow_name: The flow's name (``Flow.name``).
        entrypoint: ``"path/to/file.py:flow"`` (relative to ``path``, or to the bundle's
            root) or ``"package.module:flow"``.
        path: The working directory runs start in (None with a bundle).
        parameters: Default parameters of its runs, checked against ``parameter_schema``.
        parameter_schema: The flow's ``Flow.parameters`` (a JSON schema).
        tags, description, version: Shown in listings and given to runs' records.
        work_pool, work_queue: Whose workers run it (None: a ``serve`` process runs it).
        job_variables: Overrides of the pool's job variables (env, working dir...).
        schedules: When runs are made. None keeps the saved schedules; ``[]`` clears them.
        concurrency_limit: Most runs of this deployment active at once.
        collision_strategy: A run due while the limit is full waits (``enqueue``) or is
            cancelled (``cancel_new``).
        catchup: Due runs that are late: run ``all`` in order, only the ``latest`` (the
            older ones are skipped), or ``none``.
        max_active_runs: Most active runs (like ``concurrency_limit``, for schedules).
        retries: How often a run whose worker died is rescheduled.
        paused: No runs are made or started while paused. None keeps the saved value
            (False for a new deployment).
        storage_block: ``"slug/name"`` of a storage block holding the code bundle.
        bundle_key: The bundle's path in that block (set by ``upload_bundle()``).
        triggers: Events that run it (automations it owns: ``{deployment: "flow/name",
            states: [completed], parameters: {...}}`` or an event trigger's fields; see
            docs/automations.md). None keeps the saved ones; ``[]`` removes them.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str
    flow_name: str
    entrypoint: str
    path: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    parameter_schema: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    description: str = ""
    version: str | None = None
    work_pool: str | None = None
    work_queue: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)
    schedules: list[DeploymentSchedule] | None = None
    concurrency_limit: int | None = Field(default=None, ge=1)
    collision_strategy: Literal["enqueue", "cancel_new"] = "enqueue"
    catchup: Literal["all", "latest", "none"] = "all"
    max_active_runs: int | None = Field(default=None, ge=1)
    retries: int = Field(default=0, ge=0)
    paused: bool | None = None
    storage_block: str | None = None
    bundle_key: str | None = None
    triggers: list[dict[str, Any]] | None = None

    @field_validator("name", "flow_name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        value = value.strip()
        if not value or "/" in value:
            raise ValueError(f"{value!r} is not a name: give a non-empty name without '/'")
        return value

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: str) -> str:
        value = value.strip()
        where, sep, attribute = value.rpartition(":")
        if not sep or not where or not attribute:
            raise ValueError(f"entrypoint {value!r} must look like 'path/to/file.py:flow' or 'package.module:flow'")
        return value

    @field_validator("storage_block")
    @classmethod
    def _block_reference(cls, value: str | None) -> str | None:
        if value is None:
            return None
        slug, sep, name = value.strip().partition("/")
        if not sep or not slug or not name:
            raise ValueError(f"storage_block {value!r} must be 'slug/name' of a saved storage block, "
                             "e.g. 'local-file-system/code'")
        return value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> Deployment:
        if self.work_queue is not None and self.work_pool is None:
            raise ValueError(f"work_queue {self.work_queue!r} is given without a work_pool")
        if self.bundle_key is not None and self.storage_block is None:
            raise ValueError("bundle_key is given without the storage_block that holds it")
        problems = schema_problems(self.parameter_schema, self.parameters, partial=True)
        for i, schedule in enumerate(self.schedules or []):
            problems += [f"schedule {i + 1}: {p}" for p in
                         schema_problems(self.parameter_schema, schedule.parameters, partial=True)]
        if problems:
            raise ValueError(f"flow {self.flow_name!r}: " + "; ".join(problems))
        deployment_trigger_specs(self.full_name, self.triggers)  # refused here, before anything is saved
        return self

    @property
    def full_name(self) -> str:
        """``"<flow_name>/<name>"``, how commands and the API name it."""
        return f"{self.flow_name}/{self.name}"

    def to_spec(self, *, paused: bool = False) -> dict[str, Any]:
        """The control plane's spec: the deployment's columns plus ``schedules``.

        Args:
            paused: Used when ``self.paused`` is None (keep): the saved value.
        """
        return {
            "flow_name": self.flow_name,
            "name": self.name,
            "entrypoint": self.entrypoint,
            "path": self.path,
            "storage_block": self.storage_block,
            "bundle_key": self.bundle_key,
            "parameters": dict(self.parameters),
            "parameter_schema": dict(self.parameter_schema),
            "tags": list(self.tags),
            "description": self.description,
            "version": self.version,
            "work_pool_name": self.work_pool,
            # a pool's runs always sit in a queue: "default" is the one every pool has
            "work_queue_name": self.work_queue or ("default" if self.work_pool else None),
            "job_variables": dict(self.job_variables),
            "concurrency_limit": self.concurrency_limit,
            "collision_strategy": self.collision_strategy,
            "catchup": self.catchup,
            "max_active_runs": self.max_active_runs,
            "retries": self.retries,
            "paused": paused if self.paused is None else self.paused,
            "schedules": None if self.schedules is None else [s.to_spec() for s in self.schedules],
            "triggers": None if self.triggers is None else deployment_trigger_specs(self.full_name, self.triggers),
        }

    def apply(self) -> tuple[dict[str, Any], str]:
        """Save this deployment (create it, or update the one with its full name).

        A storage block without a bundle key uploads the bundle first
        (``upload_bundle()``).

        Returns:
            The saved deployment (with ``schedules``) and ``"created"``, ``"updated"`` or
            ``"unchanged"``.

        Raises:
            DeploymentError: Its work pool does not exist.
            DatabaseError / ApiError: The store or the server could not be reached.
        """
        plane = control_plane()
        if self.work_pool is not None and plane.get_work_pool(self.work_pool) is None:
            raise DeploymentError(
                f"work pool {self.work_pool!r} does not exist; create it with "
                f"`plait work-pool create {self.work_pool} --type process`, or deploy to an existing pool"
            )
        if self.storage_block is not None and self.bundle_key is None:
            self.upload_bundle()
        paused = False
        if self.paused is None:
            saved = plane.get_deployment(self.full_name)
            paused = bool(saved and saved.get("paused"))
        row, outcome = plane.save_deployment(self.to_spec(paused=paused))
        return dict(row), str(outcome)

    def upload_bundle(self, project_dir: str | Path | None = None) -> str:
        """Zip the project and write it to ``storage_block``; the worker downloads it.

        The bundle holds ``project_dir`` (default: ``path``, else the current directory)
        without ``.git``, ``.venv``, ``__pycache__`` and what ``.plaitignore`` lists. A
        file entrypoint becomes relative to the bundle's root, ``path`` None and
        ``bundle_key`` the bundle's key (which holds its content hash: an unchanged
        project gives the same key).

        Returns:
            The bundle's key in the storage block.

        Raises:
            DeploymentError: No storage block, or the entrypoint's file is outside the project.
            BlockNotFound: The storage block is not saved.
        """
        from plait.deployments._bundle import upload_bundle

        if self.storage_block is None:
            raise DeploymentError(f"deployment {self.full_name!r} has no storage_block to upload its bundle to")
        root = Path(project_dir if project_dir is not None else self.path or Path.cwd())
        key, entrypoint = upload_bundle(self.storage_block, root, self.entrypoint,
                                        prefix=f"{self.flow_name}/{self.name}")
        self.entrypoint = entrypoint
        self.path = None
        self.bundle_key = key
        return key


def _schedules_from(
    cron: str | None, interval: Any, anchor: Any, rrule: str | None, timezone: str | None,
    schedules: Sequence[Any] | None,
) -> list[DeploymentSchedule]:
    if isinstance(schedules, (str, Mapping)):
        raise DeploymentError("schedules must be a list of schedules (use cron=, interval= or rrule= for one)")
    listed: list[Any] = list(schedules or [])
    zone = {"timezone": timezone} if timezone else {}
    if cron is not None:
        listed.append({"cron": cron, **zone})
    if interval is not None:
        listed.append({"interval": interval, "anchor": anchor, **zone})
    elif anchor is not None:
        raise DeploymentError("anchor is given without interval")
    if rrule is not None:
        listed.append({"rrule": rrule, **zone})
    return [_schedule_entry(i, value) for i, value in enumerate(listed)]


def _schedule_entry(index: int, value: Any) -> DeploymentSchedule:
    from pydantic import ValidationError

    if isinstance(value, DeploymentSchedule):
        return value
    try:
        return DeploymentSchedule.model_validate(value)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = [str(p) for p in err.get("loc", ()) if p != "schedule"]
            message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            problems.append(f"{'.'.join(loc)}: {message}" if loc else message)
        raise DeploymentError(f"schedule {index + 1}: " + "; ".join(problems)) from None


def deployment_from_flow(
    flow: Flow[..., Any],
    name: str,
    *,
    entrypoint: str | None = None,
    path: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    cron: str | None = None,
    interval: Any = None,
    anchor: Any = None,
    rrule: str | None = None,
    timezone: str | None = None,
    schedules: Sequence[Any] | None = None,
    keep_schedules: bool = False,
    description: str | None = None,
    **options: Any,
) -> Deployment:
    """A ``Deployment`` of ``flow`` (not saved: ``.apply()`` saves it).

    Args:
        flow: The flow.
        name: The deployment's name.
        entrypoint: Default: the flow's file (absolute path) and its name there.
        path: The runs' working directory. Default: the current directory.
        parameters: Default parameters, validated against the flow's signature.
        cron, interval, anchor, rrule, timezone: One schedule of each kind given
            (``interval`` in seconds or a ``timedelta``).
        schedules: More schedules (``plait.schedules`` objects, ``DeploymentSchedule`` or
            mappings). With none of the schedule arguments the deployment has no schedule.
        keep_schedules: Leave the saved schedules as they are (schedule arguments must
            then be absent).
        description: Default: the flow's description.
        **options: Other ``Deployment`` fields: ``work_pool``, ``work_queue``,
            ``job_variables``, ``tags``, ``version``, ``concurrency_limit``,
            ``collision_strategy``, ``catchup``, ``max_active_runs``, ``retries``,
            ``paused``, ``storage_block``.

    Raises:
        ParameterBindError: A parameter the flow does not take, or of the wrong type.
        DeploymentError: Contradictory or invalid options (the message names them).
    """
    from pydantic import ValidationError
    from pydantic_core import to_jsonable_python

    given = dict(parameters or {})
    flow.check_parameters(given, partial=True)
    refuse_secret_parameters(flow.name, given)
    listed = _schedules_from(cron, interval, anchor, rrule, timezone, schedules)
    for i, schedule in enumerate(listed):
        try:
            flow.check_parameters(schedule.parameters, partial=True)
        except Exception as exc:
            raise type(exc)(f"schedule {i + 1}: {exc}") from None
    if keep_schedules and listed:
        raise DeploymentError("keep_schedules=True keeps the saved schedules: give no cron, interval, rrule "
                              "or schedules with it")
    unknown = sorted(set(options) - set(Deployment.model_fields))
    if unknown:
        import difflib

        hints = [f"{u!r}" + (f" (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(
            u, list(Deployment.model_fields), n=1)) else "") for u in unknown]
        raise DeploymentError(f"unknown deployment option(s): {', '.join(hints)}")
    try:
        return Deployment(
            name=name,
            flow_name=flow.name,
            entrypoint=entrypoint or flow.entrypoint(),
            path=str(Path(path).expanduser().resolve()) if path is not None else str(Path.cwd()),
            parameters=to_jsonable_python(given, fallback=str),
            parameter_schema=flow.parameters,
            description=(flow.description or "") if description is None else description,
            schedules=None if keep_schedules else listed,
            **options,
        )
    except ValidationError as exc:
        raise DeploymentError(validation_message(f"deployment {flow.name}/{name}", exc)) from None


def refuse_secret_parameters(flow_name: str, parameters: Mapping[str, Any]) -> None:
    """Deployments and their runs keep parameters as plain JSON (the API masks them in
    answers): a secret object given as one would arrive as ``"**********"``, so it is refused."""
    from plait._masking import secret_values

    held = [name for name, value in parameters.items() if secret_values(value)]
    if held:
        raise DeploymentError(
            f"flow {flow_name!r}: parameter(s) {', '.join(map(repr, held))} hold a secret, which would be "
            "stored in plain text; save it in a block (e.g. a Secret block) and load the block inside the flow"
        )


def validation_message(what: str, exc: Any) -> str:
    """A pydantic ValidationError as one line naming each field (never the input)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ()))
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{loc}: {message}" if loc else message)
    return f"invalid {what}: " + "; ".join(parts)
