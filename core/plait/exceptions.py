"""Exceptions plait raises. Each message names the thing at fault and what to do."""

from __future__ import annotations

__all__ = [
    "PlaitError",
    "InvalidOptions",
    "ParameterBindError",
    "SerializationError",
    "DatabaseError",
    "RunFailed",
    "CrashedRun",
    "CancelledRun",
    "UpstreamFailed",
    "BlockError",
    "BlockNotFound",
    "BlockSchemaMismatch",
    "BlockValidationError",
    "BlocksFileError",
    "ConcurrencySlotTimeout",
    "ConcurrencyLimitMissing",
]


class PlaitError(Exception):
    """Base class of plait's own errors."""


class InvalidOptions(PlaitError, ValueError):
    """A flow or task was given an option it cannot use (raised at decoration time)."""


class ParameterBindError(PlaitError, TypeError):
    """Call arguments do not fit the flow's or task's signature."""


class SerializationError(PlaitError):
    """A result could not be written with the chosen serializer."""


class DatabaseError(PlaitError):
    """The run-history database cannot be opened or written (URL shown with password masked)."""


class RunFailed(PlaitError):
    """A run failed and its original exception is not available (e.g. loaded from history)."""


class CrashedRun(PlaitError):
    """The run crashed: its process died or was interrupted before reaching a final state."""


class CancelledRun(PlaitError):
    """The run was cancelled before it finished."""


class UpstreamFailed(PlaitError):
    """A task did not run because a task it depends on did not complete."""


class BlockError(PlaitError):
    """A block cannot be saved, loaded, deleted or decrypted (the message says why)."""


class BlockNotFound(BlockError, LookupError):
    """No saved block, or no registered block type, by that name (close matches suggested)."""


class BlockSchemaMismatch(BlockError):
    """A saved block was written with an older, incompatible schema of its type."""


class BlockValidationError(BlockError, ValueError):
    """Values do not make a valid block; names the field and the rule, never a secret value."""


class BlocksFileError(BlockError):
    """A blocks file cannot be applied; nothing was written."""


class ConcurrencySlotTimeout(PlaitError, TimeoutError):
    """The slots of a concurrency (or rate) limit did not fit within ``timeout_seconds``;
    names the limit, how much of it was used and by whom."""


class ConcurrencyLimitMissing(PlaitError, LookupError):
    """``strict=True`` and a name is no concurrency limit (``plait concurrency-limit create
    NAME N`` makes one)."""
