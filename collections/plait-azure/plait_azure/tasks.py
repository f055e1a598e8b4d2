"""Prebuilt tasks over ``AzureBlobStorageContainer``: call them inside a flow.

Each takes the container block as an argument, so one task serves any container, and all
task options apply (``blob_upload.with_options(retries=3)``). Results are JSON-friendly
(blob names, local paths, ISO dates).
"""

from __future__ import annotations

import os
from typing import Any

from plait import task
from plait_azure.blob import AzureBlobStorageContainer

__all__ = ["blob_upload", "blob_download", "blob_list", "blob_copy", "blob_delete", "TASKS"]


@task
def blob_upload(container: AzureBlobStorageContainer, from_path: str | os.PathLike[str],
                to_path: str | None = None) -> str:
    """Upload a local file to an Azure Blob Storage container; return the blob's name.

    Args:
        container: Where to upload.
        from_path: The local file.
        to_path: Path in the container (relative to its folder); default: the file's name.

    Example:
        blob_upload(AzureBlobStorageContainer.load("lake"), "out/report.csv", "reports/2026-12-04.csv")
    """
    return container.upload_from_path(from_path, to_path)


@task
def blob_download(container: AzureBlobStorageContainer, from_path: str,
                  to_path: str | os.PathLike[str] | None = None) -> str:
    """Download a blob to a local file; return the file's path.

    Args:
        container: Where the blob is.
        from_path: Path of the blob (relative to the container's folder).
        to_path: Local file; default: the blob's name in the current directory.

    Example:
        blob_download(AzureBlobStorageContainer.load("lake"), "reports/2026-12-04.csv", "/tmp/report.csv")
    """
    return str(container.download_to_path(from_path, to_path))


@task
def blob_list(container: AzureBlobStorageContainer, prefix: str = "",
              max_items: int | None = None) -> list[dict[str, Any]]:
    """List the blobs of a container whose path starts with a prefix.

    Returns ``[{"name", "path", "size", "last_modified", "etag", "content_type"}]`` in name
    order: ``name`` is the full blob name, ``path`` relative to the container's folder,
    ``last_modified`` ISO 8601.

    Args:
        container: The container to list.
        prefix: Only paths starting with this (relative to the container's folder).
        max_items: Stop after this many blobs; default: all.

    Example:
        [b["path"] for b in blob_list(AzureBlobStorageContainer.load("lake"), prefix="reports/")]
    """
    return container.list_blobs(prefix, max_items=max_items)


@task
def blob_copy(container: AzureBlobStorageContainer, from_path: str, to_path: str,
              to_container: AzureBlobStorageContainer | str | None = None) -> str:
    """Copy a blob within a container or to another container; return the new blob's name.

    Args:
        container: Where the blob is.
        from_path: Path of the blob (relative to the container's folder).
        to_path: New path (relative to the target container's folder; the full name when
            ``to_container`` is a container name).
        to_container: Another container block, or a container name in the same account;
            default: the same container.

    Example:
        blob_copy(AzureBlobStorageContainer.load("lake"), "reports/latest.csv", "archive/2026-12-04.csv")
    """
    return container.copy_blob(from_path, to_path, to_container)


@task
def blob_delete(container: AzureBlobStorageContainer, paths: str | list[str]) -> list[str]:
    """Delete one blob or many (missing ones are no error); return their names.

    Args:
        container: Where the blobs are.
        paths: One path or a list of paths (relative to the container's folder).

    Example:
        blob_delete(AzureBlobStorageContainer.load("lake"), ["tmp/a.csv", "tmp/b.csv"])
    """
    return container.delete_blobs(paths)


TASKS = (blob_upload, blob_download, blob_list, blob_copy, blob_delete)
