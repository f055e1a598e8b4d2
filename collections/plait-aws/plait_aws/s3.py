"""``S3Bucket``: an S3 bucket (or a folder in one) as plait storage, and the ``s3://`` scheme.

Paths given to an ``S3Bucket`` are relative to its ``bucket_folder``; the object keys it
returns (``upload_*``, ``copy_object``, ``list_objects``) are full keys in the bucket.
Large files go through boto3's managed transfer (multipart above ``multipart_threshold``,
parts uploaded in parallel).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from plait.blocks import StorageBlock
from plait.exceptions import BlockNotFound
from plait_aws.credentials import AwsCredentials, AwsError, aws_errors

__all__ = ["S3Bucket", "s3_bucket_from_url", "default_credentials"]

MiB = 1024 * 1024
_DELETE_BATCH = 1000  # S3's limit per DeleteObjects call


class S3Bucket(StorageBlock):
    """An S3 bucket, or a folder in one: upload, download, list, copy and delete objects.

    Usable as ``result_storage`` (results are objects under ``bucket_folder``) and behind
    ``s3://bucket/folder`` URLs. Works with S3-compatible stores through the credentials'
    ``endpoint_url``.
    """

    block_type_slug: ClassVar[str] = "s3-bucket"
    block_type_name: ClassVar[str] = "S3 Bucket"
    capabilities: ClassVar[tuple[str, ...]] = ("read-path", "write-path", "list-paths", "delete-path")
    code_example: ClassVar[str] = """\
from plait import flow, task
from plait_aws import AwsCredentials, S3Bucket

S3Bucket(
    bucket_name="analytics",
    bucket_folder="plait/results",
    credentials=AwsCredentials.load("default"),
).save("results")

@task(persist_result=True, result_storage=S3Bucket.load("results"))
def extract() -> list[int]:
    return [1, 2, 3]

bucket = S3Bucket.load("results")
bucket.upload_from_path("report.csv", "reports/report.csv")
print(bucket.list_objects(prefix="reports/"))
"""

    bucket_name: str = Field(min_length=1, max_length=255, description="Name of the bucket (no 's3://', no '/').")
    bucket_folder: str = Field(
        "", description="Folder (key prefix) inside the bucket that every path is relative to; '' for the root."
    )
    credentials: AwsCredentials = Field(
        default_factory=AwsCredentials,
        description="AWS credentials to reach the bucket; empty: boto3's credential chain.",
    )
    multipart_threshold: int = Field(
        8 * MiB, ge=5 * MiB, description="Size in bytes from which uploads, downloads and copies go in parts."
    )
    multipart_chunksize: int = Field(
        8 * MiB, ge=5 * MiB, description="Size in bytes of each part of a multipart transfer."
    )
    max_concurrency: int = Field(10, ge=1, le=64, description="Parts transferred in parallel by one transfer.")

    @field_validator("bucket_name")
    @classmethod
    def _plain_bucket(cls, value: str) -> str:
        value = value.strip()
        if value.lower().startswith("s3://"):
            raise ValueError(f"bucket_name is the bare name, without 's3://' (got {value!r})")
        if "/" in value:
            raise ValueError(f"bucket_name {value!r} contains '/'; put the folder in bucket_folder")
        return value

    @field_validator("bucket_folder")
    @classmethod
    def _clean_folder(cls, value: str) -> str:
        parts = [p for p in value.replace("\\", "/").split("/") if p]
        if ".." in parts or "." in parts:
            raise ValueError(f"bucket_folder {value!r} may not contain '.' or '..' segments")
        return "/".join(parts)

    # -- locations ---------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        """``s3://bucket/folder`` (result references start with it and resolve back here)."""
        return f"s3://{self.bucket_name}/{self.bucket_folder}" if self.bucket_folder else f"s3://{self.bucket_name}"

    def object_key(self, path: str | os.PathLike[str]) -> str:
        """The full object key of ``path`` (relative to ``bucket_folder``)."""
        relative = _posix(path)
        if not relative or relative.endswith("/"):
            raise ValueError(f"path {str(path)!r} does not name an object; give a file name such as 'data/x.csv'")
        return f"{self.bucket_folder}/{relative}" if self.bucket_folder else relative

    def _prefix(self, prefix: str | os.PathLike[str]) -> str:
        relative = _posix(prefix)
        if self.bucket_folder:
            return f"{self.bucket_folder}/{relative}"
        return relative

    def _folder_prefix(self, folder: str | os.PathLike[str]) -> str:
        prefix = self._prefix(folder)
        return prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def _relative(self, key: str) -> str:
        folder = self.bucket_folder + "/" if self.bucket_folder else ""
        return key[len(folder):] if key.startswith(folder) else key

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket_name}/{key}"

    @property
    def _s3(self) -> Any:
        return self.credentials.get_client("s3")

    def transfer_config(self) -> Any:
        """The ``boto3.s3.transfer.TransferConfig`` used by uploads, downloads and copies."""
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.max_concurrency,
        )

    def _errors(self, action: str, missing_key: str | None = None) -> Any:
        missing = f"no object {self._url(missing_key)}" if missing_key is not None else None
        return aws_errors(f"{action} (bucket {self.bucket_name!r})", self.credentials, missing=missing)

    # -- the storage interface ---------------------------------------------------------------
    def read_path(self, path: str) -> bytes:
        """The bytes of the object at ``path``; FileNotFoundError when there is none."""
        key = self.object_key(path)
        with self._errors(f"reading {self._url(key)}", missing_key=key):
            return bytes(self._s3.get_object(Bucket=self.bucket_name, Key=key)["Body"].read())

    def write_path(self, path: str, content: bytes) -> str:
        """Write ``content`` as the object at ``path`` (replacing it); return its key."""
        import io

        return self.upload_from_file_object(io.BytesIO(bytes(content)), path)

    def exists(self, path: str) -> bool:
        """True when an object is stored at ``path``."""
        key = self.object_key(path)
        try:
            with self._errors(f"checking {self._url(key)}", missing_key=key):
                self._s3.head_object(Bucket=self.bucket_name, Key=key)
        except FileNotFoundError:
            return False
        return True

    def list_paths(self, prefix: str = "") -> list[str]:
        """Sorted paths (relative to ``bucket_folder``) of the objects starting with ``prefix``."""
        return sorted(
            self._relative(item["Key"]) for item in self.list_objects(prefix) if not item["Key"].endswith("/")
        )

    def delete_path(self, path: str) -> None:
        """Delete the object at ``path`` (like S3, deleting a missing object is no error)."""
        self.delete_object(path)

    # -- files and file objects --------------------------------------------------------------
    def upload_from_path(self, from_path: str | os.PathLike[str], to_path: str | None = None) -> str:
        """Upload a local file to ``to_path`` (default: the file's name); return the object key."""
        source = Path(from_path).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"no file {source} to upload")
        key = self.object_key(to_path if to_path is not None else source.name)
        with self._errors(f"uploading {source} to {self._url(key)}"):
            self._s3.upload_file(str(source), self.bucket_name, key, Config=self.transfer_config())
        return key

    def download_to_path(self, from_path: str, to_path: str | os.PathLike[str] | None = None) -> Path:
        """Download the object at ``from_path`` to a local file (default: its name in the
        current directory; parent directories are created); return the file's path."""
        key = self.object_key(from_path)
        target = Path(to_path if to_path is not None else PurePosixPath(key).name).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(f"downloading {self._url(key)} to {target}", missing_key=key):
            self._s3.download_file(self.bucket_name, key, str(target), Config=self.transfer_config())
        return target.resolve()

    def upload_from_file_object(self, file_obj: IO[bytes], to_path: str) -> str:
        """Upload a binary file object (read from its current position); return the object key."""
        key = self.object_key(to_path)
        with self._errors(f"uploading to {self._url(key)}"):
            self._s3.upload_fileobj(file_obj, self.bucket_name, key, Config=self.transfer_config())
        return key

    def download_to_file_object(self, from_path: str, file_obj: IO[bytes]) -> IO[bytes]:
        """Write the object at ``from_path`` into a binary file object; return that object."""
        key = self.object_key(from_path)
        with self._errors(f"downloading {self._url(key)}", missing_key=key):
            self._s3.download_fileobj(self.bucket_name, key, file_obj, Config=self.transfer_config())
        return file_obj

    # -- folders -----------------------------------------------------------------------------
    def upload_from_folder(self, from_folder: str | os.PathLike[str], to_folder: str = "") -> list[str]:
        """Upload every file under a local folder, keeping relative paths; return the keys."""
        source = Path(from_folder).expanduser()
        if not source.is_dir():
            raise NotADirectoryError(f"no folder {source} to upload")
        base = _posix(to_folder).strip("/")
        keys = []
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            relative = file.relative_to(source).as_posix()
            keys.append(self.upload_from_path(file, f"{base}/{relative}" if base else relative))
        return keys

    def download_folder_to_path(
        self, from_folder: str = "", to_folder: str | os.PathLike[str] = "."
    ) -> Path:
        """Download every object under ``from_folder`` into a local folder, keeping relative
        paths; return the local folder. Keys that would land outside it are refused."""
        prefix = self._folder_prefix(from_folder)
        target = Path(to_folder).expanduser().resolve()
        for item in self.list_objects(self._relative(prefix)):
            key = item["Key"]
            if key.endswith("/"):  # a "folder" marker object
                continue
            local = (target / key[len(prefix):]).resolve()
            if not local.is_relative_to(target):
                raise ValueError(f"object {self._url(key)} would be written outside {target}; not downloaded")
            local.parent.mkdir(parents=True, exist_ok=True)
            with self._errors(f"downloading {self._url(key)} to {local}", missing_key=key):
                self._s3.download_file(self.bucket_name, key, str(local), Config=self.transfer_config())
        return target

    # -- listing -----------------------------------------------------------------------------
    def list_objects(
        self, prefix: str = "", page_size: int = 1000, max_items: int | None = None
    ) -> list[dict[str, Any]]:
        """Objects whose path starts with ``prefix``, as S3 describes them (``Key`` — the full
        key —, ``Size``, ``LastModified``, ``ETag``…), in key order. Pages of ``page_size``
        (at most 1000) are fetched until all, or ``max_items``, are listed."""
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be between 1 and 1000, got {page_size}")
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be at least 1 (or None for all), got {max_items}")
        key_prefix = self._prefix(prefix)
        pagination: dict[str, int] = {"PageSize": page_size}
        if max_items is not None:
            pagination["MaxItems"] = max_items
        found: list[dict[str, Any]] = []
        with self._errors(f"listing {self._url(key_prefix)}"):
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket_name, Prefix=key_prefix, PaginationConfig=pagination):
                found.extend(page.get("Contents", []))
        return found

    # -- copying, moving, deleting -------------------------------------------------------------
    def _target(self, to_path: str, to_bucket: S3Bucket | str | None) -> tuple[str, str]:
        if to_bucket is None:
            return self.bucket_name, self.object_key(to_path)
        if isinstance(to_bucket, S3Bucket):
            return to_bucket.bucket_name, to_bucket.object_key(to_path)
        return S3Bucket(bucket_name=to_bucket).bucket_name, _posix(to_path)

    def copy_object(self, from_path: str, to_path: str, to_bucket: S3Bucket | str | None = None) -> str:
        """Copy an object within this bucket, or into ``to_bucket`` (an ``S3Bucket``, whose
        folder applies, or a bucket name, where ``to_path`` is the full key); return the new
        key. Uses these credentials for both ends; large objects are copied in parts."""
        source = self.object_key(from_path)
        bucket, key = self._target(to_path, to_bucket)
        if not key:
            raise ValueError(f"to_path {to_path!r} does not name an object")
        with self._errors(f"copying {self._url(source)} to s3://{bucket}/{key}", missing_key=source):
            self._s3.copy(
                {"Bucket": self.bucket_name, "Key": source}, bucket, key, Config=self.transfer_config()
            )
        return key

    def move_object(self, from_path: str, to_path: str, to_bucket: S3Bucket | str | None = None) -> str:
        """Copy an object (see ``copy_object``), then delete the original; return the new key."""
        key = self.copy_object(from_path, to_path, to_bucket)
        bucket = to_bucket.bucket_name if isinstance(to_bucket, S3Bucket) else (to_bucket or self.bucket_name)
        if (bucket, key) != (self.bucket_name, self.object_key(from_path)):
            self.delete_object(from_path)
        return key

    def delete_object(self, path: str) -> str:
        """Delete the object at ``path`` (no error when it is already gone); return its key."""
        key = self.object_key(path)
        with self._errors(f"deleting {self._url(key)}"):
            self._s3.delete_object(Bucket=self.bucket_name, Key=key)
        return key

    def delete_objects(self, paths: Iterable[str]) -> list[str]:
        """Delete many objects (in batches of 1000); return their keys.

        Raises:
            AwsError: S3 refused some deletions (the first few are named).
        """
        keys = [self.object_key(p) for p in ([paths] if isinstance(paths, str) else paths)]
        deleted: list[str] = []
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start:start + _DELETE_BATCH]
            with self._errors(f"deleting {len(batch)} objects"):
                response = self._s3.delete_objects(
                    Bucket=self.bucket_name, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": False}
                )
            errors = response.get("Errors", [])
            if errors:
                shown = "; ".join(f"{e.get('Key')}: {e.get('Code')} {e.get('Message', '')}".strip() for e in errors[:3])
                more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
                raise AwsError(
                    f"S3 refused to delete {len(errors)} object(s) in bucket {self.bucket_name!r}: {shown}{more}",
                    code=errors[0].get("Code"),
                )
            deleted.extend(d["Key"] for d in response.get("Deleted", []))
        return deleted


def _posix(path: str | os.PathLike[str]) -> str:
    return os.fspath(path).replace("\\", "/").lstrip("/")


# -- the s3:// storage scheme ---------------------------------------------------------------------
DEFAULT_CREDENTIALS_NAME = "default"


def default_credentials() -> AwsCredentials:
    """The saved ``AwsCredentials`` block named ``default`` if there is one, else empty
    credentials (boto3's chain: ``AWS_*`` environment variables, profiles, roles)."""
    try:
        return AwsCredentials.load(DEFAULT_CREDENTIALS_NAME)
    except BlockNotFound:
        return AwsCredentials()


def s3_bucket_from_url(url: str) -> S3Bucket:
    """The storage factory of the ``s3`` scheme: ``s3://bucket/folder`` -> ``S3Bucket``,
    with ``default_credentials()``."""
    parts = urlsplit(str(url))
    if parts.scheme.lower() != "s3" or not parts.netloc:
        raise ValueError(f"{url!r} is not an s3:// URL with a bucket; use e.g. 's3://my-bucket/plait-results'")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: s3:// storage URLs take no '?' or '#' part")
    return S3Bucket(
        bucket_name=parts.netloc,
        bucket_folder=unquote(parts.path),
        credentials=default_credentials(),
    )
