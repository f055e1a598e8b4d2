"""Deployments: flows that run without anyone typing ``python flow.py``.

    from plait.deployments import deploy, run_deployment

    etl.deploy("nightly", work_pool="local", cron="0 3 * * *", parameters={"days": 1})
    run = run_deployment("etl/nightly", parameters={"days": 7}, timeout=600)

A deployment (``Deployment``) names a flow's entrypoint, its default parameters (checked
against the flow's signature), schedules, the work pool whose workers run it, limits, and
where the code is (a path, or a bundle in a storage block). Three ways in:
``Flow.serve(...)`` (a process that runs its own deployment's runs), ``Flow.deploy(...)``
/ ``deploy(flow, ...)`` (for a worker), and ``plait deploy`` reading ``plait.yaml``
(``apply_file``). Everything goes through the control plane: the local store, or the
plait server ``PLAIT_API_URL`` names. See docs/deployments.md.
"""

from __future__ import annotations

from plait.deployments._apply import DeploymentsFileError, apply_file, read_deployments_file
from plait.deployments._bundle import BundleError, bundle_bytes, fetch_bundle
from plait.deployments._model import Deployment, DeploymentError, DeploymentSchedule, deployment_from_flow
from plait.deployments._runs import (
    DeploymentNotFound,
    backfill,
    deploy,
    get_deployment,
    run_deployment,
    slot_key,
)
from plait.deployments._schema import schema_problems

__all__ = [
    "BundleError",
    "Deployment",
    "DeploymentError",
    "DeploymentNotFound",
    "DeploymentSchedule",
    "DeploymentsFileError",
    "apply_file",
    "backfill",
    "bundle_bytes",
    "deploy",
    "deployment_from_flow",
    "fetch_bundle",
    "get_deployment",
    "read_deployments_file",
    "run_deployment",
    "schema_problems",
    "slot_key",
]
