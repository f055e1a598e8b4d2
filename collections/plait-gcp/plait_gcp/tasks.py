"""Prebuilt tasks over ``GcsBucket``: call them inside a flow.

Each takes the bucket as an argument, so one task serves any bucket, and all task options
apply (``gcs_upload.with_options(retries=3)``). Results are JSON-friendly (names, paths,
ISO dates).
"""

from __future__ import annotations

import os
from typing import Any

from plait import task
from plait_gcp.gcs import GcsBucket

__all__ = ["gcs_upload", "gcs_download", "gcs_list_objects", "gcs_copy", "gcs_move", "gcs_delete", "TASKS"]


@task
def gcs_upload(bucket: GcsBucket, from_path: str | os.PathLike[str], to_path: str | None = None) -> str:
    """Upload a local file to a Cloud Storage bucket; return the object's name.

    Args:
        bucket: Where to upload.
        from_path: The local file.
        to_path: Path in the bucket (relative to its folder); default: the file's name.

    Example:
        gcs_upload(GcsBucket.load("lake"), "out/report.csv", "reports/2026-12-04.csv")
    """
    return bucket.upload_from_path(from_path, to_path)


@task
def gcs_download(bucket: GcsBucket, from_path: str, to_path: str | os.PathLike[str] | None = None) -> str:
    """Download an object from a Cloud Storage bucket to a local file; return the file's path.

    Args:
        bucket: Where the object is.
        from_path: Path of the object (relative to the bucket's folder).
        to_path: Local file; default: the object's name in the current directory.

    Example:
        gcs_download(GcsBucket.load("lake"), "reports/2026-12-04.csv", "/tmp/report.csv")
    """
    return str(bucket.download_to_path(from_path, to_path))


@task
def gcs_list_objects(
    bucket: GcsBucket, prefix: str = "", page_size: int = 1000, max_items: int | None = None
) -> list[dict[str, Any]]:
    """List the objects of a Cloud Storage bucket whose path starts with a prefix.

    Returns ``[{"name", "path", "size", "updated", "md5_hash", "crc32c", "generation",
    "content_type", "etag"}]`` in name order: ``name`` is the full object name, ``path``
    relative to the bucket's folder, ``updated`` ISO 8601.

    Args:
        bucket: The bucket to list.
        prefix: Only paths starting with this (relative to the bucket's folder).
        page_size: Objects fetched per request (1 to 1000).
        max_items: Stop after this many objects; default: all.

    Example:
        [o["path"] for o in gcs_list_objects(GcsBucket.load("lake"), prefix="reports/")]
    """
    return bucket.list_objects(prefix, page_size=page_size, max_items=max_items)


@task
def gcs_copy(bucket: GcsBucket, from_path: str, to_path: str, to_bucket: GcsBucket | str | None = None) -> str:
    """Copy an object within a bucket or to another bucket; return the new object's name.

    Args:
        bucket: Where the object is.
        from_path: Path of the object (relative to the bucket's folder).
        to_path: New path (relative to the target bucket's folder; the full name when
            ``to_bucket`` is a bucket name).
        to_bucket: Another ``GcsBucket`` or bucket name; default: the same bucket.

    Example:
        gcs_copy(GcsBucket.load("lake"), "reports/latest.csv", "archive/2026-12-04.csv")
    """
    return bucket.copy_object(from_path, to_path, to_bucket)


@task
def gcs_move(bucket: GcsBucket, from_path: str, to_path: str, to_bucket: GcsBucket | str | None = None) -> str:
    """Move an object within a bucket or to another bucket; return the new object's name.

    Args:
        bucket: Where the object is.
        from_path: Path of the object (relative to the bucket's folder).
        to_path: New path, as for ``gcs_copy``.
        to_bucket: Another ``GcsBucket`` or bucket name; default: the same bucket.

    Example:
        gcs_move(GcsBucket.load("lake"), "incoming/a.csv", "a.csv", to_bucket=GcsBucket.load("archive"))
    """
    return bucket.move_object(from_path, to_path, to_bucket)


@task
def gcs_delete(bucket: GcsBucket, paths: str | list[str]) -> list[str]:
    """Delete one object or many from a Cloud Storage bucket; return their names.

    Objects already gone are no error (and are in the list).

    Args:
        bucket: Where the objects are.
        paths: One path or a list of paths (relative to the bucket's folder).

    Example:
        gcs_delete(GcsBucket.load("lake"), ["tmp/a.csv", "tmp/b.csv"])
    """
    return bucket.delete_objects([paths] if isinstance(paths, str) else paths)


TASKS = (gcs_upload, gcs_download, gcs_list_objects, gcs_copy, gcs_move, gcs_delete)
