"""``DaskTaskRunner``: task bodies as Dask futures, states recorded by the flow's process.

It is a ``plait.task_runners.RemoteTaskRunner``: each task run's state machine (upstream
waits, caching, retries, timeouts, result persistence, history) runs in the flow's process;
only the body — the function and its arguments, pickled with cloudpickle — is submitted to
the cluster, so Dask workers need plait installed but no access to plait's database.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Mapping
from typing import Any

from plait.exceptions import InvalidOptions, PlaitError
from plait.task_runners import BodyHandle, RemoteTaskRunner, run_task_body

__all__ = ["DaskTaskRunner"]


class DaskTaskRunner(RemoteTaskRunner):
    """Run the bodies of submitted tasks on a Dask cluster.

    Args:
        address: A running scheduler to connect to (``"tcp://10.0.0.5:8786"``). The runner
            closes only its client; the cluster stays up.
        cluster_class: Without ``address``: the cluster class to start for each flow run
            (a class or ``"module.Class"``; default ``distributed.LocalCluster``), closed
            when the flow run ends.
        cluster_kwargs: Keyword arguments for ``cluster_class``.
        adapt_kwargs: When given, ``cluster.adapt(**adapt_kwargs)`` (``{"minimum": 1,
            "maximum": 8}``) lets the cluster grow and shrink with the work.
        client_kwargs: Keyword arguments for ``distributed.Client``.

    Example:
        ``@flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 4}))``
    """

    def __init__(
        self,
        address: str | None = None,
        cluster_class: type | str | None = None,
        cluster_kwargs: Mapping[str, Any] | None = None,
        adapt_kwargs: Mapping[str, Any] | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if address is not None and not (isinstance(address, str) and address):
            raise InvalidOptions(f"DaskTaskRunner address must be a scheduler address such as "
                                 f"'tcp://127.0.0.1:8786', got {address!r}")
        if address is not None and (cluster_class is not None or cluster_kwargs or adapt_kwargs):
            raise InvalidOptions("DaskTaskRunner takes either address= (connect to a running scheduler) or "
                                 "cluster_class/cluster_kwargs/adapt_kwargs (start a cluster), not both")
        for name, value in (("cluster_kwargs", cluster_kwargs), ("adapt_kwargs", adapt_kwargs),
                            ("client_kwargs", client_kwargs)):
            if value is not None and not isinstance(value, Mapping):
                raise InvalidOptions(f"DaskTaskRunner {name} must be a dict of keyword arguments, got {value!r}")
        if cluster_class is not None and not isinstance(cluster_class, (type, str)):
            raise InvalidOptions("DaskTaskRunner cluster_class must be a class or 'module.Class', "
                                 f"got {cluster_class!r}")
        super().__init__()
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.adapt_kwargs = dict(adapt_kwargs) if adapt_kwargs is not None else None
        self.client_kwargs = dict(client_kwargs or {})
        self._cluster: Any = None
        self._client: Any = None

    def duplicate(self) -> DaskTaskRunner:
        return DaskTaskRunner(self.address, self.cluster_class, self.cluster_kwargs, self.adapt_kwargs,
                              self.client_kwargs)

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` while a flow run uses the runner (None otherwise)."""
        return self._client

    # -- RemoteTaskRunner ----------------------------------------------------------------------
    def start_backend(self) -> None:
        from distributed import Client

        if self.address is not None:
            try:
                self._client = Client(self.address, **{"timeout": 10, **self.client_kwargs})  # type: ignore[no-untyped-call]
            except OSError as exc:
                raise PlaitError(f"DaskTaskRunner cannot reach the Dask scheduler at {self.address!r} "
                                 f"({type(exc).__name__}: {exc}). Fix: start it (`dask scheduler`) or check the "
                                 "address; without address= the runner starts a LocalCluster") from exc
            return
        cls = self._resolved_cluster_class()
        self._cluster = cls(**self.cluster_kwargs)
        try:
            if self.adapt_kwargs is not None:
                self._cluster.adapt(**self.adapt_kwargs)
            self._client = Client(self._cluster, **self.client_kwargs)  # type: ignore[no-untyped-call]
        except BaseException:
            self._cluster.close()
            self._cluster = None
            raise

    def stop_backend(self) -> None:
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:  # only what this runner started
                cluster.close()

    def driver_threads(self) -> int:
        # one thread waits on each body in flight: keep every worker thread fed (an adaptive
        # cluster may have none yet, hence the floor)
        threads = sum(self._client.nthreads().values()) if self._client is not None else 0
        return max(16, min(256, 4 * threads))

    def submit_body(self, payload: bytes, label: str) -> BodyHandle:
        assert self._client is not None, "the runner is not started"
        handle: BodyHandle = self._client.submit(run_task_body, payload, pure=False,
                                                 key=f"{label}-{uuid.uuid4().hex}")
        return handle

    def where(self) -> str:
        if self.address is not None:
            return f"the Dask cluster at {self.address}"
        return "a Dask worker"

    def _resolved_cluster_class(self) -> type:
        if self.cluster_class is None:
            from distributed import LocalCluster

            return LocalCluster
        if isinstance(self.cluster_class, type):
            return self.cluster_class
        module, _, name = self.cluster_class.rpartition(".")
        try:
            found = getattr(importlib.import_module(module), name) if module else None
        except ImportError as exc:
            raise PlaitError(f"DaskTaskRunner cluster_class {self.cluster_class!r} cannot be imported ({exc}). "
                             "Fix: install its package, or pass the class itself") from exc
        if not isinstance(found, type):
            raise PlaitError(f"DaskTaskRunner cluster_class {self.cluster_class!r} is not a class. Fix: name it as "
                             "'package.module.ClassName', e.g. 'dask_kubernetes.KubeCluster'")
        return found

    def __repr__(self) -> str:
        if self.address is not None:
            return f"DaskTaskRunner(address={self.address!r})"
        name = self.cluster_class if isinstance(self.cluster_class, str) else getattr(
            self.cluster_class, "__qualname__", "LocalCluster")
        # keys only: cluster options may carry credentials (security=, tokens)
        return f"DaskTaskRunner(cluster_class={name!r}, cluster_kwargs={sorted(self.cluster_kwargs)!r})"
