"""plait-dask as a plugin (entry point ``plait_dask`` in the ``plait.plugins`` group).

Registers ``DaskTaskRunner`` as the task runner ``dask``. The name is declared in
pyproject.toml (``plait.task_runners``), so plait imports this module (and Dask) only when
a flow asks for that runner.
"""

from __future__ import annotations

from plait.hookspecs import hookimpl
from plait_dask.task_runner import DaskTaskRunner

__all__ = ["plait_register_task_runners"]


@hookimpl
def plait_register_task_runners() -> dict[str, type]:
    return {"dask": DaskTaskRunner}
