"""plait's collection conventions for plait-dask (plait.testing.CollectionSuite): discovery,
declarations (the ``plait.task_runners`` group), the exported API, the import rules, and the
examples of README.md and docs/collections/plait-dask.md (each starts a real LocalCluster)."""

from __future__ import annotations

import plait_dask
from plait_dask import DaskTaskRunner

from plait import plugins
from plait.testing import CollectionSuite


class TestPlaitDask(CollectionSuite):
    package = plait_dask
    docs = ["README.md", "../../docs/collections/plait-dask.md"]
    requires_plait = ">=0.1,<0.2"
    exports = ["DaskTaskRunner"]
    docs_timeout = 120


def test_the_runner_is_found_by_name_through_the_hook() -> None:
    assert plugins.task_runner_class("dask") is DaskTaskRunner
    assert plugins.task_runner_names()["dask"] is DaskTaskRunner
