"""The plait server's API as Python: ``PlaitClient`` (sync) and ``AsyncPlaitClient`` (async).

    from plait.client import PlaitClient

    with PlaitClient("http://127.0.0.1:4300/api", api_key="plait_...") as client:
        for run in client.iter_flow_runs(state="FAILED"):
            print(run["id"], run["flow_name"])

Both default to the settings (``PLAIT_API_URL``, ``PLAIT_API_KEY``, ``PLAIT_API_TIMEOUT``)
and share one I/O-free core (``plait._api``): the same requests, the same answers, the
same errors. See docs/client.md.
"""

from plait._api import (
    ApiAuthError,
    ApiConfigError,
    ApiError,
    ApiNotFound,
    ApiUnavailable,
    Event,
    Page,
)
from plait.client._async import AsyncPlaitClient
from plait.client._sync import PlaitClient

__all__ = [
    "ApiAuthError",
    "ApiConfigError",
    "ApiError",
    "ApiNotFound",
    "ApiUnavailable",
    "AsyncPlaitClient",
    "Event",
    "Page",
    "PlaitClient",
]
