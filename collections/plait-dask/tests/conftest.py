"""A real Dask cluster for the session: a scheduler in this process and two worker
processes of one thread each (LocalCluster), shared by the tests through its address."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[object]:
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                           host="127.0.0.1")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def dask_address(dask_cluster) -> str:
    return dask_cluster.scheduler_address  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def worker_pids(dask_address: str) -> set[int]:
    """The process ids of the cluster's two workers."""
    import os

    from distributed import Client

    with Client(dask_address) as client:
        return set(client.run(os.getpid).values())
