"""``GcsBucket``: a Cloud Storage bucket (or a folder in one) as plait storage, and ``gs://``.

Paths given to a ``GcsBucket`` are relative to its ``bucket_folder``; the object names it
returns (``upload_*``, ``copy_object``, ``list_objects``) are full names in the bucket.
Uploads larger than the client's threshold (8 MiB) or with ``chunk_size`` set are resumable;
copies use ``rewrite``, which works for objects of any size and across locations.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar
from urllib.parse import unquote, urlsplit

from pydantic import ConfigDict, Field, field_validator

from plait.blocks import StorageBlock
from plait.exceptions import BlockNotFound
from plait_gcp.credentials import GcpCredentials, GcpError, gcp_errors

__all__ = ["GcsBucket", "gcs_bucket_from_url", "default_credentials"]

_CHUNK_UNIT = 256 * 1024  # resumable chunks are multiples of 256 KiB (a Cloud Storage rule)


class GcsBucket(StorageBlock):
    """A Cloud Storage bucket, or a folder in one: upload, download, list, copy and delete objects.

    Usable as ``result_storage`` (results are objects under ``bucket_folder``) and behind
    ``gs://bucket/folder`` URLs. Reaches an emulator through the credentials' ``api_endpoint``.
    """

    # The outermost model decides whether errors quote their input: the nested key, here.
    model_config = ConfigDict(hide_input_in_errors=True)

    block_type_slug: ClassVar[str] = "gcs-bucket"
    block_type_name: ClassVar[str] = "GCS Bucket"
    capabilities: ClassVar[tuple[str, ...]] = ("read-path", "write-path", "list-paths", "delete-path")
    code_example: ClassVar[str] = """\
from plait import flow, task
from plait_gcp import GcpCredentials, GcsBucket

GcsBucket(
    bucket_name="analytics",
    bucket_folder="plait/results",
    credentials=GcpCredentials.load("default"),
).save("results")

@task(persist_result=True, result_storage=GcsBucket.load("results"))
def extract() -> list[int]:
    return [1, 2, 3]

bucket = GcsBucket.load("results")
bucket.upload_from_path("report.csv", "reports/report.csv")
print(bucket.list_paths("reports/"))
"""

    bucket_name: str = Field(min_length=3, max_length=222, description="Name of the bucket (no 'gs://', no '/').")
    bucket_folder: str = Field(
        "", description="Folder (name prefix) inside the bucket that every path is relative to; '' for the root."
    )
    credentials: GcpCredentials = Field(
        default_factory=GcpCredentials,
        description="GCP credentials to reach the bucket; empty: Application Default Credentials.",
    )
    chunk_size: int | None = Field(
        None, ge=_CHUNK_UNIT,
        description="Bytes per chunk of resumable uploads and downloads (a multiple of 262144); empty: the "
        "client's default (uploads above 8 MiB are resumable).",
    )
    timeout: float = Field(60.0, gt=0, description="Seconds each HTTP request may take.")
    retry_timeout: float = Field(
        120.0, ge=0,
        description="Seconds to keep retrying a request that failed in a way Google calls transient (429, 5xx, "
        "a dropped connection); 0: no retries (uploads and copies then never retry either).",
    )

    @field_validator("bucket_name")
    @classmethod
    def _plain_bucket(cls, value: str) -> str:
        value = value.strip()
        if value.lower().startswith("gs://"):
            raise ValueError(f"bucket_name is the bare name, without 'gs://' (got {value!r})")
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

    @field_validator("chunk_size")
    @classmethod
    def _chunk_multiple(cls, value: int | None) -> int | None:
        if value is not None and value % _CHUNK_UNIT:
            raise ValueError(f"chunk_size must be a multiple of 262144 (256 KiB), got {value}")
        return value

    # -- locations ---------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        """``gs://bucket/folder`` (result references start with it and resolve back here)."""
        return f"gs://{self.bucket_name}/{self.bucket_folder}" if self.bucket_folder else f"gs://{self.bucket_name}"

    def object_name(self, path: str | os.PathLike[str]) -> str:
        """The full object name of ``path`` (relative to ``bucket_folder``)."""
        relative = _posix(path)
        if not relative or relative.endswith("/"):
            raise ValueError(f"path {str(path)!r} does not name an object; give a file name such as 'data/x.csv'")
        return f"{self.bucket_folder}/{relative}" if self.bucket_folder else relative

    def _prefix(self, prefix: str | os.PathLike[str]) -> str:
        relative = _posix(prefix)
        return f"{self.bucket_folder}/{relative}" if self.bucket_folder else relative

    def _relative(self, name: str) -> str:
        folder = self.bucket_folder + "/" if self.bucket_folder else ""
        return name[len(folder):] if folder and name.startswith(folder) else name

    def _url(self, name: str) -> str:
        return f"gs://{self.bucket_name}/{name}"

    def get_bucket(self) -> Any:
        """The ``google.cloud.storage.Bucket`` (no request is made)."""
        return self.credentials.get_storage_client().bucket(self.bucket_name)

    def _blob(self, name: str) -> Any:
        return self.get_bucket().blob(name, chunk_size=self.chunk_size)

    def _retry(self) -> Any:
        """Google's default retry policy within ``retry_timeout``, or None (no retries)."""
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.retry_timeout) if self.retry_timeout else None

    def _write_retry(self) -> dict[str, Any]:
        """Uploads and copies keep the library's own (conditional) policy unless retries are off."""
        return {} if self.retry_timeout else {"retry": None}

    def _errors(self, action: str, missing_name: str | None = None) -> Any:
        missing = f"no object {self._url(missing_name)}" if missing_name is not None else None
        return gcp_errors(f"{action} (bucket {self.bucket_name!r})", self.credentials, missing=missing)

    # -- the storage interface ---------------------------------------------------------------
    def read_path(self, path: str) -> bytes:
        """The bytes of the object at ``path``; FileNotFoundError when there is none."""
        name = self.object_name(path)
        with self._errors(f"reading {self._url(name)}", missing_name=name):
            return bytes(self._blob(name).download_as_bytes(timeout=self.timeout, retry=self._retry()))

    def write_path(self, path: str, content: bytes) -> str:
        """Write ``content`` as the object at ``path`` (replacing it); return its name."""
        return self.upload_from_file_object(io.BytesIO(bytes(content)), path)

    def exists(self, path: str) -> bool:
        """True when an object is stored at ``path``."""
        name = self.object_name(path)
        with self._errors(f"checking {self._url(name)}"):
            return bool(self._blob(name).exists(timeout=self.timeout, retry=self._retry()))

    def list_paths(self, prefix: str = "") -> list[str]:
        """Sorted paths (relative to ``bucket_folder``) of the objects starting with ``prefix``."""
        return sorted(self._relative(o["name"]) for o in self.list_objects(prefix) if not o["name"].endswith("/"))

    def delete_path(self, path: str) -> None:
        """Delete the object at ``path`` (deleting a missing object is no error)."""
        self.delete_object(path)

    # -- files and file objects --------------------------------------------------------------
    def upload_from_path(self, from_path: str | os.PathLike[str], to_path: str | None = None) -> str:
        """Upload a local file to ``to_path`` (default: the file's name); return the object name."""
        source = Path(from_path).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"no file {source} to upload")
        name = self.object_name(to_path if to_path is not None else source.name)
        with self._errors(f"uploading {source} to {self._url(name)}"):
            self._blob(name).upload_from_filename(str(source), timeout=self.timeout, **self._write_retry())
        return name

    def download_to_path(self, from_path: str, to_path: str | os.PathLike[str] | None = None) -> Path:
        """Download the object at ``from_path`` to a local file (default: its name in the
        current directory; parent directories are created); return the file's path."""
        name = self.object_name(from_path)
        target = Path(to_path if to_path is not None else PurePosixPath(name).name).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(f"downloading {self._url(name)} to {target}", missing_name=name):
            self._blob(name).download_to_filename(str(target), timeout=self.timeout, retry=self._retry())
        return target.resolve()

    def upload_from_file_object(self, file_obj: IO[bytes], to_path: str) -> str:
        """Upload a binary file object (read from its current position); return the object name."""
        name = self.object_name(to_path)
        with self._errors(f"uploading to {self._url(name)}"):
            self._blob(name).upload_from_file(_from_here(file_obj), timeout=self.timeout, **self._write_retry())
        return name

    def download_to_file_object(self, from_path: str, file_obj: IO[bytes]) -> IO[bytes]:
        """Write the object at ``from_path`` into a binary file object; return that object."""
        name = self.object_name(from_path)
        with self._errors(f"downloading {self._url(name)}", missing_name=name):
            self._blob(name).download_to_file(file_obj, timeout=self.timeout, retry=self._retry())
        return file_obj

    def generate_signed_url(
        self, path: str, expiration: timedelta = timedelta(hours=1), method: str = "GET",
        content_type: str | None = None,
    ) -> str:
        """A V4 signed URL that lets anyone holding it ``method`` the object at ``path`` until
        ``expiration`` (at most 7 days) has passed; signed locally with the service account key.

        Raises:
            GcpError: The credentials hold no service account key (anonymous or user
                credentials cannot sign).
        """
        from google.auth.credentials import Signing

        if not timedelta(seconds=1) <= expiration <= timedelta(days=7):
            raise ValueError(f"expiration must be between 1 second and 7 days, got {expiration}")
        name = self.object_name(path)
        signer, _ = self.credentials.get_credentials()
        if not isinstance(signer, Signing) or not getattr(signer, "service_account_email", None):
            raise GcpError(f"signing a URL for {self._url(name)} needs a service account key; set "
                           "service_account_info or service_account_file on the GcpCredentials block")
        endpoint = self.credentials.endpoint or "https://storage.googleapis.com"
        with self._errors(f"signing a URL for {self._url(name)}"):
            return str(self._blob(name).generate_signed_url(
                version="v4", expiration=expiration, method=method.upper(), content_type=content_type,
                credentials=signer, api_access_endpoint=endpoint,
            ))

    # -- folders -----------------------------------------------------------------------------
    def upload_from_folder(self, from_folder: str | os.PathLike[str], to_folder: str = "") -> list[str]:
        """Upload every file under a local folder, keeping relative paths; return the names."""
        source = Path(from_folder).expanduser()
        if not source.is_dir():
            raise NotADirectoryError(f"no folder {source} to upload")
        base = _posix(to_folder).strip("/")
        names = []
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            relative = file.relative_to(source).as_posix()
            names.append(self.upload_from_path(file, f"{base}/{relative}" if base else relative))
        return names

    def download_folder_to_path(self, from_folder: str = "", to_folder: str | os.PathLike[str] = ".") -> Path:
        """Download every object under ``from_folder`` into a local folder, keeping relative
        paths; return the local folder. Names that would land outside it are refused."""
        prefix = self._prefix(from_folder)
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        target = Path(to_folder).expanduser().resolve()
        for item in self.list_objects(self._relative(prefix)):
            name = item["name"]
            if name.endswith("/"):  # a "folder" placeholder object
                continue
            local = (target / name[len(prefix):]).resolve()
            if not local.is_relative_to(target):
                raise ValueError(f"object {self._url(name)} would be written outside {target}; not downloaded")
            local.parent.mkdir(parents=True, exist_ok=True)
            with self._errors(f"downloading {self._url(name)} to {local}", missing_name=name):
                self._blob(name).download_to_filename(str(local), timeout=self.timeout, retry=self._retry())
        return target

    # -- listing -----------------------------------------------------------------------------
    def list_objects(
        self, prefix: str = "", page_size: int = 1000, max_items: int | None = None
    ) -> list[dict[str, Any]]:
        """Objects whose path starts with ``prefix``, in name order, as dicts: ``name`` (full),
        ``path`` (relative to the folder), ``size``, ``updated`` (ISO 8601), ``md5_hash``,
        ``crc32c``, ``generation``, ``content_type``, ``etag``. Pages of ``page_size`` (at most
        1000) are fetched until all, or ``max_items``, are listed."""
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be between 1 and 1000, got {page_size}")
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be at least 1 (or None for all), got {max_items}")
        name_prefix = self._prefix(prefix)
        found: list[dict[str, Any]] = []
        with self._errors(f"listing {self._url(name_prefix)}"):
            blobs = self.credentials.get_storage_client().list_blobs(
                self.bucket_name, prefix=name_prefix or None, page_size=page_size, max_results=max_items,
                timeout=self.timeout, retry=self._retry(),
            )
            for blob in blobs:
                found.append(self._describe(blob))
                if max_items is not None and len(found) >= max_items:
                    break  # some emulators ignore maxResults
        return sorted(found, key=lambda item: item["name"])

    def _describe(self, blob: Any) -> dict[str, Any]:
        updated = blob.updated
        return {
            "name": blob.name,
            "path": self._relative(blob.name),
            "size": int(blob.size or 0),
            "updated": updated.isoformat() if isinstance(updated, datetime) else None,
            "md5_hash": blob.md5_hash,
            "crc32c": blob.crc32c,
            "generation": blob.generation,
            "content_type": blob.content_type,
            "etag": blob.etag,
        }

    # -- copying, moving, deleting -------------------------------------------------------------
    def _target(self, to_path: str, to_bucket: GcsBucket | str | None) -> tuple[str, str]:
        if to_bucket is None:
            return self.bucket_name, self.object_name(to_path)
        if isinstance(to_bucket, GcsBucket):
            return to_bucket.bucket_name, to_bucket.object_name(to_path)
        return GcsBucket(bucket_name=to_bucket).bucket_name, _posix(to_path)

    def copy_object(self, from_path: str, to_path: str, to_bucket: GcsBucket | str | None = None) -> str:
        """Copy an object within this bucket, or into ``to_bucket`` (a ``GcsBucket``, whose
        folder applies, or a bucket name, where ``to_path`` is the full name); return the new
        name. Uses these credentials for both ends; large objects are rewritten in steps."""
        source = self.object_name(from_path)
        bucket, name = self._target(to_path, to_bucket)
        if not name:
            raise ValueError(f"to_path {to_path!r} does not name an object")
        client = self.credentials.get_storage_client()
        with self._errors(f"copying {self._url(source)} to gs://{bucket}/{name}", missing_name=source):
            target = client.bucket(bucket).blob(name)
            token, _, _ = target.rewrite(self._blob(source), timeout=self.timeout, **self._write_retry())
            while token is not None:  # large or cross-location copies take several calls
                token, _, _ = target.rewrite(
                    self._blob(source), token=token, timeout=self.timeout, **self._write_retry()
                )
        return name

    def move_object(self, from_path: str, to_path: str, to_bucket: GcsBucket | str | None = None) -> str:
        """Copy an object (see ``copy_object``), then delete the original; return the new name."""
        name = self.copy_object(from_path, to_path, to_bucket)
        bucket = to_bucket.bucket_name if isinstance(to_bucket, GcsBucket) else (to_bucket or self.bucket_name)
        if (bucket, name) != (self.bucket_name, self.object_name(from_path)):
            self.delete_object(from_path)
        return name

    def delete_object(self, path: str) -> str:
        """Delete the object at ``path`` (no error when it is already gone); return its name."""
        name = self.object_name(path)
        self._delete_name(name)
        return name

    def delete_objects(self, paths: Iterable[str]) -> list[str]:
        """Delete many objects, one request each; return their names (those already gone
        included).

        Raises:
            GcpError: Cloud Storage refused a deletion (the others before it are done).
        """
        names = [self.object_name(p) for p in ([paths] if isinstance(paths, str) else paths)]
        for name in names:
            self._delete_name(name)
        return names

    def _delete_name(self, name: str) -> None:
        from google.api_core.exceptions import NotFound

        with self._errors(f"deleting {self._url(name)}"):
            try:
                self._blob(name).delete(timeout=self.timeout, retry=self._retry())
            except NotFound:
                pass  # gone already: what the caller wanted


class _Window(io.RawIOBase):
    """A seekable stream seen from an offset on: resumable uploads insist on starting at 0."""

    def __init__(self, stream: IO[bytes], start: int) -> None:
        super().__init__()
        self._stream, self._start = stream, start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._stream.tell() - self._start

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            offset += self._start
        return self._stream.seek(offset, whence) - self._start

    def read(self, size: int | None = -1) -> bytes:
        return self._stream.read(-1 if size is None else size)

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _from_here(stream: IO[bytes]) -> IO[bytes]:
    """``stream`` itself when it is at its start (or cannot seek), else a window from here on."""
    try:
        position = stream.tell() if stream.seekable() else 0
    except (OSError, ValueError):
        return stream
    return stream if position == 0 else _Window(stream, position)  # type: ignore[return-value]


def _posix(path: str | os.PathLike[str]) -> str:
    return os.fspath(path).replace("\\", "/").lstrip("/")


# -- the gs:// storage scheme ---------------------------------------------------------------------
DEFAULT_CREDENTIALS_NAME = "default"


def default_credentials() -> GcpCredentials:
    """The saved ``GcpCredentials`` block named ``default`` if there is one, else empty
    credentials (Application Default Credentials; ``STORAGE_EMULATOR_HOST`` is honoured)."""
    try:
        return GcpCredentials.load(DEFAULT_CREDENTIALS_NAME)
    except BlockNotFound:
        return GcpCredentials()


def gcs_bucket_from_url(url: str) -> GcsBucket:
    """The storage factory of the ``gs`` scheme: ``gs://bucket/folder`` -> ``GcsBucket``,
    with ``default_credentials()``."""
    parts = urlsplit(str(url))
    if parts.scheme.lower() != "gs" or not parts.netloc:
        raise ValueError(f"{url!r} is not a gs:// URL with a bucket; use e.g. 'gs://my-bucket/plait-results'")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: gs:// storage URLs take no '?' or '#' part")
    return GcsBucket(bucket_name=parts.netloc, bucket_folder=unquote(parts.path), credentials=default_credentials())

