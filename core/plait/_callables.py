"""What flows and tasks share: binding arguments, naming runs, rendering parameters."""

from __future__ import annotations

import inspect
import os
import random
import uuid
from typing import Any, Callable

from plait._logging import scrub
from plait.exceptions import ParameterBindError

_P = inspect.Parameter


class Signature:
    """A function's signature, prepared once for fast binding on every call."""

    __slots__ = ("sig", "kinds", "simple", "names")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.sig = inspect.signature(fn)
        self.kinds = {name: p.kind for name, p in self.sig.parameters.items()}
        self.names = tuple(self.sig.parameters)
        # positional-or-keyword only, no defaults: bind by zip (the common hot case)
        self.simple = all(
            p.kind is _P.POSITIONAL_OR_KEYWORD and p.default is _P.empty for p in self.sig.parameters.values()
        )

    def bind(self, owner: str, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Arguments by parameter name, defaults applied; a clear error when they do not fit."""
        if self.simple and not kwargs and len(args) == len(self.names):
            return dict(zip(self.names, args))
        try:
            bound = self.sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise ParameterBindError(
                f"{owner} cannot be called with these arguments: {exc}. Its signature is {self.sig}"
            ) from None
        bound.apply_defaults()
        return bound.arguments

    def call_arguments(self, parameters: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
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


_PLAIN = (str, int, float, bool, type(None))


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe, size-capped rendering of a value for run history (not for results)."""
    if isinstance(value, _PLAIN):
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
        out = {scrub(str(k)): jsonable(v, depth + 1) for k, v in list(value.items())[:20]}
        if len(value) > 20:
            out["…"] = f"{len(value) - 20} more"
        return out
    text = scrub(repr(value))
    return text if len(text) <= 200 else text[:200] + "…"


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
