"""plait-azure: Azure Blob Storage for plait flows.

    from plait_azure import AzureBlobCredentials, AzureBlobStorageContainer

    AzureBlobCredentials(connection_string="DefaultEndpointsProtocol=https;...").save("default")
    AzureBlobStorageContainer(container_name="analytics").save("lake")

Blocks: ``AzureBlobCredentials``, ``AzureBlobStorageContainer`` (also the ``az://`` result
storage scheme). Tasks: ``blob_upload``, ``blob_download``, ``blob_list``, ``blob_copy``,
``blob_delete``.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("plait-azure")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

from plait_azure.blob import AzureBlobStorageContainer, az_container_from_url, default_credentials
from plait_azure.credentials import AzureBlobCredentials, AzureError, clear_client_cache
from plait_azure.tasks import blob_copy, blob_delete, blob_download, blob_list, blob_upload

__all__ = [
    "AzureBlobCredentials",
    "AzureBlobStorageContainer",
    "AzureError",
    "__version__",
    "az_container_from_url",
    "blob_copy",
    "blob_delete",
    "blob_download",
    "blob_list",
    "blob_upload",
    "clear_client_cache",
    "default_credentials",
]
