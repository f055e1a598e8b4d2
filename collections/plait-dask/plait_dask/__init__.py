"""plait-dask: run plait task bodies on a Dask cluster (``DaskTaskRunner``)."""

from __future__ import annotations

from plait_dask.task_runner import DaskTaskRunner

__all__ = ["DaskTaskRunner"]
