"""Workers and ``serve``: the processes that run deployments' flow runs.

    from plait.worker import Worker, serve

    Worker("local", limit=4).run()              # what `plait worker start --pool local` does
    serve(my_flow, name="nightly", cron="0 3 * * *")   # what `my_flow.serve(...)` does

A worker polls a work pool, claims its due runs atomically and runs each through the pool
type's infrastructure block (``process``: a subprocess on this machine), heartbeats, and
obeys cancellation. ``serve`` does the same for one deployment, without a pool. See
docs/workers.md.
"""

from plait.worker._launch import WorkerError, merge_job_variables
from plait.worker._serve import Server, serve
from plait.worker._worker import Worker

__all__ = ["Worker", "serve", "Server", "WorkerError", "merge_job_variables"]
