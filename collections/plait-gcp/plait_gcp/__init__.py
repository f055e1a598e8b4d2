"""plait-gcp: Google Cloud for plait flows.

    from pathlib import Path

    from plait_gcp import GcpCredentials, GcsBucket

    GcpCredentials(service_account_info=Path("key.json").read_text()).save("default")
    GcsBucket(bucket_name="analytics", credentials=GcpCredentials.load("default")).save("lake")

Blocks: ``GcpCredentials``, ``GcsBucket`` (also the ``gs://`` result storage scheme).
Tasks: ``gcs_upload``, ``gcs_download``, ``gcs_list_objects``, ``gcs_copy``, ``gcs_move``,
``gcs_delete``.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("plait-gcp")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

from plait_gcp.credentials import GcpCredentials, GcpError, clear_client_cache
from plait_gcp.gcs import GcsBucket, default_credentials, gcs_bucket_from_url
from plait_gcp.tasks import gcs_copy, gcs_delete, gcs_download, gcs_list_objects, gcs_move, gcs_upload

__all__ = [
    "GcpCredentials",
    "GcpError",
    "GcsBucket",
    "__version__",
    "clear_client_cache",
    "default_credentials",
    "gcs_bucket_from_url",
    "gcs_copy",
    "gcs_delete",
    "gcs_download",
    "gcs_list_objects",
    "gcs_move",
    "gcs_upload",
]
