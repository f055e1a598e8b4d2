"""Prebuilt tasks over ``S3Bucket`` and ``AwsSecret``: call them inside a flow.

Each takes the block as an argument, so one task serves any bucket or secret, and all task
options apply (``s3_upload.with_options(retries=3)``). Results are JSON-friendly (keys,
paths, ISO dates). The secret tasks never persist what they return, and a value passed to
``write_secret`` as a ``SecretStr`` stays out of the run history.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import SecretBytes, SecretStr

from plait import task
from plait_aws.s3 import S3Bucket
from plait_aws.secrets_manager import AwsSecret

__all__ = [
    "s3_upload",
    "s3_download",
    "s3_list_objects",
    "s3_copy",
    "s3_move",
    "s3_delete",
    "read_secret",
    "write_secret",
    "delete_secret",
    "TASKS",
]


@task
def s3_upload(bucket: S3Bucket, from_path: str | os.PathLike[str], to_path: str | None = None) -> str:
    """Upload a local file to an S3 bucket; return the object's key.

    Args:
        bucket: Where to upload.
        from_path: The local file.
        to_path: Path in the bucket (relative to its folder); default: the file's name.

    Example:
        s3_upload(S3Bucket.load("lake"), "out/report.csv", "reports/2026-11-21.csv")
    """
    return bucket.upload_from_path(from_path, to_path)


@task
def s3_download(bucket: S3Bucket, from_path: str, to_path: str | os.PathLike[str] | None = None) -> str:
    """Download an object from an S3 bucket to a local file; return the file's path.

    Args:
        bucket: Where the object is.
        from_path: Path of the object (relative to the bucket's folder).
        to_path: Local file; default: the object's name in the current directory.

    Example:
        s3_download(S3Bucket.load("lake"), "reports/2026-11-21.csv", "/tmp/report.csv")
    """
    return str(bucket.download_to_path(from_path, to_path))


@task
def s3_list_objects(
    bucket: S3Bucket, prefix: str = "", page_size: int = 1000, max_items: int | None = None
) -> list[dict[str, Any]]:
    """List the objects of an S3 bucket whose path starts with a prefix.

    Returns ``[{"key", "path", "size", "last_modified", "etag"}]`` in key order: ``key`` is
    the full object key, ``path`` relative to the bucket's folder, ``last_modified`` ISO 8601.

    Args:
        bucket: The bucket to list.
        prefix: Only paths starting with this (relative to the bucket's folder).
        page_size: Objects fetched per request (1 to 1000).
        max_items: Stop after this many objects; default: all.

    Example:
        [o["path"] for o in s3_list_objects(S3Bucket.load("lake"), prefix="reports/")]
    """
    folder = bucket.bucket_folder + "/" if bucket.bucket_folder else ""
    return [
        {
            "key": item["Key"],
            "path": item["Key"][len(folder):] if item["Key"].startswith(folder) else item["Key"],
            "size": int(item.get("Size", 0)),
            "last_modified": item["LastModified"].isoformat() if item.get("LastModified") else None,
            "etag": str(item.get("ETag", "")).strip('"'),
        }
        for item in bucket.list_objects(prefix, page_size=page_size, max_items=max_items)
    ]


@task
def s3_copy(bucket: S3Bucket, from_path: str, to_path: str, to_bucket: S3Bucket | str | None = None) -> str:
    """Copy an object within a bucket or to another bucket; return the new object's key.

    Args:
        bucket: Where the object is.
        from_path: Path of the object (relative to the bucket's folder).
        to_path: New path (relative to the target bucket's folder; the full key when
            ``to_bucket`` is a bucket name).
        to_bucket: Another ``S3Bucket`` or bucket name; default: the same bucket.

    Example:
        s3_copy(S3Bucket.load("lake"), "reports/latest.csv", "archive/2026-11-21.csv")
    """
    return bucket.copy_object(from_path, to_path, to_bucket)


@task
def s3_move(bucket: S3Bucket, from_path: str, to_path: str, to_bucket: S3Bucket | str | None = None) -> str:
    """Move an object within a bucket or to another bucket; return the new object's key.

    Args:
        bucket: Where the object is.
        from_path: Path of the object (relative to the bucket's folder).
        to_path: New path, as for ``s3_copy``.
        to_bucket: Another ``S3Bucket`` or bucket name; default: the same bucket.

    Example:
        s3_move(S3Bucket.load("lake"), "incoming/a.csv", "a.csv", to_bucket=S3Bucket.load("archive"))
    """
    return bucket.move_object(from_path, to_path, to_bucket)


@task
def s3_delete(bucket: S3Bucket, paths: str | list[str]) -> list[str]:
    """Delete one object or many from an S3 bucket; return the deleted keys.

    Args:
        bucket: Where the objects are.
        paths: One path or a list of paths (relative to the bucket's folder).

    Example:
        s3_delete(S3Bucket.load("lake"), ["tmp/a.csv", "tmp/b.csv"])
    """
    if isinstance(paths, str):
        return [bucket.delete_object(paths)]
    return bucket.delete_objects(paths)


@task(persist_result=False)
def read_secret(secret: AwsSecret, version_stage: str | None = None) -> str | bytes:
    """Read a secret's value from AWS Secrets Manager (never persisted as a result).

    Args:
        secret: The secret to read.
        version_stage: A staging label such as ``"AWSPREVIOUS"``; default: the current value.

    Example:
        password = read_secret(AwsSecret.load("warehouse"))
    """
    return secret.read_secret(version_stage=version_stage)


@task(persist_result=False)
def write_secret(secret: AwsSecret, value: str | bytes | SecretStr | SecretBytes) -> str:
    """Store a new value for a secret in AWS Secrets Manager (creating it); return its ARN.

    Pass the value as a ``pydantic.SecretStr`` to keep it out of the recorded task parameters.

    Args:
        secret: The secret to write.
        value: The new value.

    Example:
        write_secret(AwsSecret.load("warehouse"), SecretStr(new_password))
    """
    return secret.write_secret(value)


@task
def delete_secret(
    secret: AwsSecret, recovery_window_in_days: int | None = None, force_delete_without_recovery: bool = False
) -> str:
    """Delete a secret from AWS Secrets Manager, after a recovery window or at once; return
    the deletion date (ISO 8601).

    Args:
        secret: The secret to delete.
        recovery_window_in_days: Days (7 to 30) during which the deletion can be undone.
        force_delete_without_recovery: Delete at once, with no way back.

    Example:
        delete_secret(AwsSecret.load("old-token"), recovery_window_in_days=7)
    """
    return secret.delete_secret(recovery_window_in_days, force_delete_without_recovery)


TASKS = (s3_upload, s3_download, s3_list_objects, s3_copy, s3_move, s3_delete, read_secret, write_secret, delete_secret)
