"""What flows and tasks share: binding arguments, naming runs, rendering parameters."""

from __future__ import annotations

import inspect
import math
import os
import random
import re
import typing
import uuid
from collections.abc import Callable
from typing import Any

from plait._masking import MASK, register_secret, secret_values
from plait._masking import mask as scrub
from plait.exceptions import InvalidOptions, ParameterBindError, PlaitError

_P = inspect.Parameter


class Signature:
    """A function's signature, prepared once for fast binding on every call."""

    __slots__ = ("sig", "kinds", "simple", "names", "secret_names", "annotated")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.sig = inspect.signature(fn)
        self.kinds = {name: p.kind for name, p in self.sig.parameters.items()}
        self.names = tuple(self.sig.parameters)
        # positional-or-keyword only, no defaults: bind by zip (the common hot case)
        self.simple = all(
            p.kind is _P.POSITIONAL_OR_KEYWORD and p.default is _P.empty for p in self.sig.parameters.values()
        )
        self.secret_names = _secret_parameters(fn, self.sig)
        # whether any named parameter has a type hint a flow call validates against
        self.annotated = any(
            p.annotation is not _P.empty and p.kind not in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD)
            for p in self.sig.parameters.values()
        )

    def bind(self, owner: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Arguments by parameter name, defaults applied; a clear error when they do not fit.

        The values of parameters annotated as secrets (``SecretStr``...) are registered for
        masking, so a plain string passed to one is never stored or logged in clear.
        """
        if self.simple and not kwargs and len(args) == len(self.names):
            arguments = dict(zip(self.names, args, strict=True))
        else:
            try:
                bound = self.sig.bind(*args, **kwargs)
            except TypeError as exc:
                raise ParameterBindError(
                    f"{owner} cannot be called with these arguments: {exc}{self._guesses(kwargs)}. "
                    f"Its signature is {self.sig}"
                ) from None
            bound.apply_defaults()
            arguments = bound.arguments
        for name in self.secret_names:
            _register_secret_argument(arguments.get(name))
        return arguments

    def _guesses(self, kwargs: dict[str, Any]) -> str:
        """``" (unknown keyword 'dya': did you mean 'day'?)"`` for keywords the function does not
        take, or nothing."""
        if any(kind is _P.VAR_KEYWORD for kind in self.kinds.values()):
            return ""
        import difflib

        named = [n for n, k in self.kinds.items() if k not in (_P.VAR_POSITIONAL, _P.POSITIONAL_ONLY)]
        hints = []
        for key in kwargs:
            if key not in named:
                close = difflib.get_close_matches(key, named, n=1)
                hints.append(f"unknown keyword {key!r}" + (f": did you mean {close[0]!r}?" if close else ""))
        return f" ({'; '.join(hints)})" if hints else ""

    def call_arguments(self, parameters: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Split bound parameters back into ``(args, kwargs)`` for the call."""
        if self.simple:
            return tuple(parameters.values()), {}
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, value in parameters.items():
            kind = self.kinds[name]
            if kind is _P.POSITIONAL_ONLY:
                args.append(value)
            elif kind is _P.VAR_POSITIONAL:
                args.extend(value)
            elif kind is _P.VAR_KEYWORD:
                kwargs.update(value)
            else:
                kwargs[name] = value
        return tuple(args), kwargs


def check_name_template(template: Any, signature: Signature, owner: str, option: str) -> None:
    """A run-name template may only name the function's parameters (fails at decoration)."""
    if not isinstance(template, str) or any(k is _P.VAR_KEYWORD for k in signature.kinds.values()):
        return
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise InvalidOptions(f"{option} {template!r} of {owner} is not a valid template: {exc}") from None
    for field in fields:
        base = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not base or base.isdigit():
            raise InvalidOptions(f"{option} {template!r} of {owner} must name parameters ({{table}}), not {{{field}}}")
        if base not in signature.kinds:
            raise InvalidOptions(
                f"{option} {template!r} of {owner} names {base!r}, which is not one of its parameters "
                f"({', '.join(signature.names) or 'it takes none'})"
            )


def render_name(template: Any, parameters: dict[str, Any], owner: str, option: str) -> str:
    """A run's name from its ``flow_run_name``/``task_run_name``: the template filled with the
    parameters, or what the function returns (called with no arguments, or the parameters)."""
    try:
        if isinstance(template, str):
            name: Any = template.format(**parameters)
        elif _takes_one_argument(template):
            name = template(dict(parameters))
        else:
            name = template()
    except Exception as exc:
        raise PlaitError(f"{option} of {owner} failed: {type(exc).__name__}: {scrub(str(exc))}") from None
    if not isinstance(name, str) or not name.strip():
        raise PlaitError(f"{option} of {owner} must give a non-empty string, got {scrub(repr(name))[:80]}")
    text: str = scrub(name.strip())
    return text if len(text) <= 200 else text[:199] + "…"


def _takes_one_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD, _P.VAR_POSITIONAL) for p in params)


class _IdSource:
    """Random (version 4) UUIDs without a system call per id: ``uuid.uuid4()`` reads
    os.urandom every time, which costs tens of µs on some VMs. Seeded from os.urandom per
    process (and again after fork), so ids stay unique across processes."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.random = random.Random(os.urandom(32))

    def __call__(self) -> str:
        bits = self.random.getrandbits(128)
        bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
        bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
        return str(uuid.UUID(int=bits))


new_id = _IdSource()


# -- secret parameters ------------------------------------------------------------------------
def _is_secret_type(annotation: Any, depth: int = 0) -> bool:
    """A pydantic secret type (``SecretStr``, ``SecretBytes``, ``Secret[...]``), optionally
    inside ``Optional``/unions/``Annotated``, or a pydantic model (a block) with secret fields.
    Duck-typed: nothing here imports pydantic."""
    if depth > 5 or annotation is None:
        return False
    origin = typing.get_origin(annotation)
    if origin is not None:
        if isinstance(origin, type) and callable(getattr(origin, "get_secret_value", None)):
            return True  # Secret[dict[str, Any]]
        return any(_is_secret_type(arg, depth + 1) for arg in typing.get_args(annotation))
    if not isinstance(annotation, type):
        return False
    if callable(getattr(annotation, "get_secret_value", None)):
        return True
    fields = getattr(annotation, "model_fields", None)
    if isinstance(fields, dict):
        return any(_is_secret_type(getattr(info, "annotation", None), depth + 1) for info in fields.values())
    return False


def _secret_parameters(fn: Callable[..., Any], sig: inspect.Signature) -> tuple[str, ...]:
    """Names of ``fn``'s parameters annotated with a secret type (see ``_is_secret_type``)."""
    annotated = [name for name, p in sig.parameters.items() if p.annotation is not _P.empty]
    if not annotated:
        return ()
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # one unresolvable forward reference: resolve the others one by one
        hints = {name: _resolve(fn, sig.parameters[name].annotation) for name in annotated}
    return tuple(name for name in annotated if _is_secret_type(hints.get(name)))


_SECRET_NAME = re.compile(r"\bSecret(?:Str|Bytes)?\b")


def _resolve(fn: Callable[..., Any], annotation: Any) -> Any:
    """An annotation written as a string, evaluated in ``fn``'s module; a name that cannot be
    resolved (a class local to a function) still counts as secret when it reads like one."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, getattr(fn, "__globals__", {}))  # noqa: S307 - the function's own annotation
    except Exception:
        return _SecretMarker if _SECRET_NAME.search(annotation) else None


class _SecretMarker:
    """Stands for an unresolvable annotation naming a pydantic secret type."""

    @staticmethod
    def get_secret_value() -> None:
        return None


def _register_secret_argument(value: Any) -> None:
    if isinstance(value, (str, bytes)):
        register_secret(value)
    elif value is not None:
        for text in secret_values(value):
            register_secret(text)


# -- rendering parameters for run history -----------------------------------------------------
_PLAIN = (str, int, float, bool, type(None))


def safe_repr(value: Any) -> str:
    """``repr(value)``, or a placeholder naming its type when its ``__repr__`` raises."""
    try:
        return repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ (or one returning a non-str) must not break the run
        cls = type(value)
        return f"<{cls.__module__}.{cls.__qualname__} object; its __repr__ raised {type(exc).__name__}>"


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe, size-capped rendering of a value for run history (not for results).

    Secrets never reach it in clear: strings are masked (``plait._masking``), pydantic
    secrets become ``***``, and a model (a block) holding secrets has them registered
    before its repr (which pydantic masks anyway) is taken.
    """
    if isinstance(value, _PLAIN):
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)  # JSON has no NaN or infinity (PostgreSQL refuses them)
        if isinstance(value, str):
            value = scrub(value)  # a secret passed as an argument is not stored in history
            if len(value) > 500:
                return value[:500] + "…"
        return value
    if depth < 3 and isinstance(value, (list, tuple)):
        items = [jsonable(v, depth + 1) for v in value[:20]]
        if len(value) > 20:
            items.append(f"… {len(value) - 20} more")
        return items
    if depth < 3 and isinstance(value, dict):
        out = {scrub(_safe_str(k)): jsonable(v, depth + 1) for k, v in list(value.items())[:20]}
        if len(value) > 20:
            out["…"] = f"{len(value) - 20} more"
        return out
    if not isinstance(value, type) and callable(getattr(value, "get_secret_value", None)):
        _register_secret_argument(value)
        return MASK
    if isinstance(getattr(type(value), "model_fields", None), dict):
        _register_secret_argument(value)  # its secrets are masked wherever they turn up later
    text = scrub(safe_repr(value))
    return text if len(text) <= 200 else text[:200] + "…"


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001
        return safe_repr(value)


_ADJECTIVES = (
    "amber", "brisk", "calm", "dapper", "eager", "fuzzy", "gentle", "hardy", "ivory", "jolly",
    "keen", "lucid", "mellow", "nimble", "olive", "placid", "quiet", "rustic", "sunny", "tidy",
    "urban", "vivid", "witty", "young", "zesty",
)
_NOUNS = (
    "otter", "heron", "badger", "falcon", "lynx", "marten", "newt", "osprey", "puffin", "quail",
    "raven", "stoat", "tern", "vole", "wren", "yak", "zebu", "ibis", "gecko", "finch",
)


def run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}"
