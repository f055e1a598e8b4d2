"""Cache policies: what a task's cache key is made of.

Policies combine with ``+``: ``INPUTS + TASK_SOURCE`` changes its key when either the
arguments or the task's code change. The task's own identity is always part of the key, so
two tasks never share an entry by accident.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import pickle
from dataclasses import dataclass
from typing import Any

from plait.exceptions import InvalidOptions

__all__ = [
    "CachePolicy",
    "Inputs",
    "TaskSource",
    "FlowParameters",
    "NoCache",
    "INPUTS",
    "TASK_SOURCE",
    "FLOW_PARAMETERS",
    "NO_CACHE",
    "DEFAULT",
    "hash_objects",
]


class Unhashable(Exception):
    """An input could not be turned into a stable key."""


def hash_objects(*objects: Any) -> str:
    """A stable hex digest of ``objects``: JSON when possible, pickle otherwise."""
    try:
        payload = json.dumps(objects, sort_keys=True, default=_json_default).encode()
    except (TypeError, ValueError):
        try:
            payload = pickle.dumps(objects, protocol=4)
        except Exception as exc:
            raise Unhashable(str(exc)) from None
    return hashlib.sha256(payload).hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, bytes):
        return obj.hex()
    cls = type(obj)
    if isinstance(getattr(cls, "model_fields", None), dict) and hasattr(obj, "model_dump"):
        # a pydantic model by its class and field values (python mode: a SecretStr stays an
        # object, handled below), the same in every process
        return {"$model": f"{cls.__module__}.{cls.__qualname__}", "fields": obj.model_dump()}
    if callable(getattr(obj, "get_secret_value", None)):
        # a secret by a digest of its value: inputs differing only in a secret never share a
        # cache entry, and the key (itself a digest) holds nothing of the secret
        secret = obj.get_secret_value()
        raw = secret if isinstance(secret, bytes) else str(secret).encode()
        return {"$secret": hashlib.sha256(raw).hexdigest()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"$dataclass": f"{cls.__module__}.{cls.__qualname__}", "fields": dataclasses.asdict(obj)}
    raise TypeError(cls.__name__)


class CachePolicy:
    """Base class: ``key_parts`` returns the values a key is built from, or None."""

    is_none = False

    def key_parts(self, context: Any, parameters: dict[str, Any]) -> list[Any] | None:
        raise NotImplementedError

    def __add__(self, other: object) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        mine = self.policies if isinstance(self, Compound) else (self,)
        theirs = other.policies if isinstance(other, Compound) else (other,)
        return Compound(tuple(p for p in mine + theirs if not p.is_none))

    def __repr__(self) -> str:
        return type(self).__name__ + "()"


@dataclass(frozen=True, repr=False)
class Inputs(CachePolicy):
    """Key on the task's arguments; ``exclude`` names arguments to leave out."""

    exclude: tuple[str, ...] = ()

    def key_parts(self, context: Any, parameters: dict[str, Any]) -> list[Any]:
        return ["inputs", {k: v for k, v in parameters.items() if k not in self.exclude}]


@dataclass(frozen=True, repr=False)
class TaskSource(CachePolicy):
    """Key on the task function's source code: editing the task invalidates the cache."""

    def key_parts(self, context: Any, parameters: dict[str, Any]) -> list[Any]:
        return ["source", _source_digest(context.task.fn)]


@dataclass(frozen=True, repr=False)
class FlowParameters(CachePolicy):
    """Key on the parameters of the flow run the task belongs to."""

    def key_parts(self, context: Any, parameters: dict[str, Any]) -> list[Any]:
        flow_run = context.flow_run
        return ["flow_parameters", context.flow_parameters if flow_run is not None else None]


@dataclass(frozen=True, repr=False)
class NoCache(CachePolicy):
    """Never cache."""

    is_none = True

    def key_parts(self, context: Any, parameters: dict[str, Any]) -> None:
        return None


@dataclass(frozen=True, repr=False)
class Compound(CachePolicy):
    """Several policies at once (built with ``+``)."""

    policies: tuple[CachePolicy, ...] = ()

    @property
    def is_none(self) -> bool:  # type: ignore[override]
        return not self.policies

    def key_parts(self, context: Any, parameters: dict[str, Any]) -> list[Any] | None:
        parts: list[Any] = []
        for policy in self.policies:
            more = policy.key_parts(context, parameters)
            if more is None:
                return None
            parts.extend(more)
        return parts or None

    def __repr__(self) -> str:
        return " + ".join(repr(p) for p in self.policies) or "NoCache()"


INPUTS = Inputs()
TASK_SOURCE = TaskSource()
FLOW_PARAMETERS = FlowParameters()
NO_CACHE = NoCache()
DEFAULT = INPUTS + TASK_SOURCE

_BY_NAME = {
    "inputs": INPUTS,
    "task_source": TASK_SOURCE,
    "flow_parameters": FLOW_PARAMETERS,
    "none": NO_CACHE,
    "no_cache": NO_CACHE,
    "default": DEFAULT,
}


def coerce_cache_policy(value: Any) -> CachePolicy | None:
    """Accept a policy, its name, or a list of either (combined); name what is wrong."""
    if value is None or isinstance(value, CachePolicy):
        return value
    if isinstance(value, str):
        combined: CachePolicy = NO_CACHE
        for name in value.replace("+", " ").split():
            policy = _BY_NAME.get(name.strip().lower())
            if policy is None:
                raise InvalidOptions(
                    f"unknown cache_policy {name!r}; use one of {', '.join(sorted(_BY_NAME))}, "
                    "or a CachePolicy such as INPUTS + TASK_SOURCE"
                )
            combined = combined + policy
        return combined
    if isinstance(value, (list, tuple)):
        combined = NO_CACHE
        for item in value:
            combined = combined + coerce_cache_policy(item)
        return combined
    raise InvalidOptions(
        f"cache_policy must be a CachePolicy (e.g. plait.cache_policies.INPUTS) or its name, got {value!r}"
    )


_SOURCE_CACHE: dict[Any, str] = {}


def _source_digest(fn: Any) -> str:
    digest = _SOURCE_CACHE.get(fn)
    if digest is None:
        try:
            text = inspect.getsource(fn).encode()
        except (OSError, TypeError):
            code = getattr(fn, "__code__", None)
            text = code.co_code + repr(code.co_consts).encode() if code else repr(fn).encode()
        digest = hashlib.sha256(text).hexdigest()
        _SOURCE_CACHE[fn] = digest
    return digest


def compute_cache_key(options: Any, context: Any, task_key: str, parameters: dict[str, Any]) -> str | None:
    """The cache key for a call, or None when this call is not cacheable.

    Raises ``Unhashable`` naming the argument when an input cannot be keyed.
    """
    if options.cache_key_fn is not None:
        key = options.cache_key_fn(context, parameters)
        return None if key is None else hash_objects(task_key, str(key))
    policy = options.cache_policy
    if policy is None or policy.is_none:
        return None
    parts = policy.key_parts(context, parameters)
    if parts is None:
        return None
    try:
        return hash_objects(task_key, parts)
    except Unhashable:
        for name, value in parameters.items():
            try:
                hash_objects(value)
            except Unhashable as exc:
                raise Unhashable(f"argument {name!r} ({type(value).__name__}) cannot be hashed: {exc}") from None
        raise
