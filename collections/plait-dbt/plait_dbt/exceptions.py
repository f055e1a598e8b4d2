"""Errors plait-dbt raises. Each message names what is wrong and what to do next; none
ever contains a secret of a profile."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plait.exceptions import PlaitError

if TYPE_CHECKING:
    from plait_dbt.artifacts import DbtRunResult

__all__ = [
    "DbtError",
    "DbtProjectNotFound",
    "DbtProfileError",
    "DbtCommandError",
    "DbtNodeError",
    "DbtNodeSkipped",
    "DbtReentryError",
]


class DbtError(PlaitError):
    """Base class of plait-dbt's errors."""


class DbtProjectNotFound(DbtError, FileNotFoundError):
    """``project_dir`` is not a dbt project: it has no ``dbt_project.yml``. Raised before
    dbt runs."""


class DbtProfileError(DbtError, ValueError):
    """A profile cannot be rendered or used (a missing field, a missing adapter package, an
    unreadable ``existing_profiles_yml``); the message names the field."""


class DbtCommandError(DbtError):
    """A dbt command did not succeed. The message is dbt's own (a compilation error, or the
    nodes that failed with dbt's message for each).

    Attributes:
        command: The dbt command, e.g. ``"build"``.
        result: The ``DbtRunResult`` of the invocation (artifacts, node results), or None
            when dbt stopped before writing run results.
    """

    def __init__(self, message: str, command: str = "", result: DbtRunResult | None = None) -> None:
        super().__init__(message)
        self.command = command
        self.result = result

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (str(self), self.command, self.result))


class DbtNodeError(DbtError):
    """One dbt node errored or failed. Node task runs are now recorded live and end Failed
    with dbt's message directly; this class stays for code that catches it.

    Attributes:
        unique_id: The node, e.g. ``"test.jaffle.assert_positive_amounts"``.
        status: dbt's status: ``"error"``, ``"fail"``, ``"runtime error"``, ``"partial success"``.
    """

    def __init__(self, message: str, unique_id: str = "", status: str = "") -> None:
        super().__init__(message)
        self.unique_id = unique_id
        self.status = status

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (str(self), self.unique_id, self.status))


class DbtNodeSkipped(DbtError):
    """dbt skipped a node. Skipped nodes are now recorded Cancelled ("Skipped") directly;
    this class stays for code that catches it."""


class DbtReentryError(DbtError):
    """dbt was asked to run from inside a dbt command of the same thread: typically a flow
    script named ``dbt_*.py`` without an ``if __name__ == "__main__":`` guard, which dbt
    imports as a plugin. Raised at once instead of waiting for ever."""
