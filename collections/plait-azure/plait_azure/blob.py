"""``AzureBlobStorageContainer``: a blob container (or a folder in one) as plait storage, and
the ``az://`` scheme.

Paths given to a container block are relative to its ``container_folder``; the blob names it
returns (``upload_*``, ``copy_blob``, ``list_blobs``' ``name``) are full names in the container.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar
from urllib.parse import unquote, urlsplit

from pydantic import ConfigDict, Field, field_validator

from plait.blocks import StorageBlock
from plait.exceptions import BlockNotFound
from plait_azure.credentials import AzureBlobCredentials, AzureError, azure_errors

__all__ = ["AzureBlobStorageContainer", "az_container_from_url", "default_credentials"]

# Azure's rule: 3-63 of a-z, 0-9 and single hyphens, starting and ending with a letter or digit.
_CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
_SPECIAL_CONTAINERS = frozenset({"$root", "$web", "$logs"})
COPY_TIMEOUT = 600.0  # seconds a server-side copy may stay pending


class AzureBlobStorageContainer(StorageBlock):
    """An Azure Blob Storage container, or a folder in one: upload, download, list, copy and
    delete blobs.

    Usable as ``result_storage`` (results are blobs under ``container_folder``) and behind
    ``az://container/folder`` URLs.
    """

    # pydantic quotes (part of) the input in a ValidationError: keep nested secrets out of it
    model_config = ConfigDict(hide_input_in_errors=True)

    block_type_slug: ClassVar[str] = "azure-blob-storage-container"
    block_type_name: ClassVar[str] = "Azure Blob Storage Container"
    capabilities: ClassVar[tuple[str, ...]] = ("read-path", "write-path", "list-paths", "delete-path")
    code_example: ClassVar[str] = """\
from plait import flow, task
from plait_azure import AzureBlobCredentials, AzureBlobStorageContainer

AzureBlobStorageContainer(
    container_name="analytics",
    container_folder="plait/results",
    credentials=AzureBlobCredentials.load("default"),
).save("results")

@task(persist_result=True, result_storage=AzureBlobStorageContainer.load("results"))
def extract() -> list[int]:
    return [1, 2, 3]

container = AzureBlobStorageContainer.load("results")
container.upload_from_path("report.csv", "reports/report.csv")
print(container.list_paths("reports/"))
"""

    container_name: str = Field(description="Name of the container (no 'az://', no '/').")
    container_folder: str = Field(
        "", description="Folder (blob name prefix) that every path is relative to; '' for the container's root."
    )
    credentials: AzureBlobCredentials = Field(
        default_factory=AzureBlobCredentials,
        description="Credentials of the storage account; empty: the AZURE_STORAGE_* environment variables.",
    )
    max_concurrency: int = Field(4, ge=1, le=64, description="Parallel connections of one upload or download.")

    @field_validator("container_name")
    @classmethod
    def _valid_container(cls, value: str) -> str:
        value = value.strip()
        if value.lower().startswith("az://"):
            raise ValueError(f"container_name is the bare name, without 'az://' (got {value!r})")
        if "/" in value:
            raise ValueError(f"container_name {value!r} contains '/'; put the folder in container_folder")
        if value not in _SPECIAL_CONTAINERS and not _CONTAINER_NAME.match(value):
            raise ValueError(f"container_name {value!r} is not a valid Azure container name: 3 to 63 lowercase "
                             "letters, digits and single hyphens, starting and ending with a letter or digit")
        return value

    @field_validator("container_folder")
    @classmethod
    def _clean_folder(cls, value: str) -> str:
        parts = [p for p in value.replace("\\", "/").split("/") if p]
        if ".." in parts or "." in parts:
            raise ValueError(f"container_folder {value!r} may not contain '.' or '..' segments")
        return "/".join(parts)

    # -- locations ---------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        """``az://container/folder`` (result references start with it and resolve back here)."""
        base = f"az://{self.container_name}"
        return f"{base}/{self.container_folder}" if self.container_folder else base

    def blob_name(self, path: str | os.PathLike[str]) -> str:
        """The full blob name of ``path`` (relative to ``container_folder``)."""
        relative = _posix(path)
        if not relative or relative.endswith("/"):
            raise ValueError(f"path {str(path)!r} does not name a blob; give a file name such as 'data/x.csv'")
        return f"{self.container_folder}/{relative}" if self.container_folder else relative

    def relative_path(self, name: str) -> str:
        """``name`` (a full blob name) relative to ``container_folder``."""
        folder = self.container_folder + "/" if self.container_folder else ""
        return name[len(folder):] if folder and name.startswith(folder) else name

    def _url(self, name: str) -> str:
        return f"az://{self.container_name}/{name}"

    @property
    def _container(self) -> Any:
        return self.credentials.get_container_client(self.container_name)

    def _blob(self, name: str) -> Any:
        return self._container.get_blob_client(name)

    def _errors(self, action: str, missing_blob: str | None = None) -> Any:
        missing = f"no blob {self._url(missing_blob)}" if missing_blob is not None else None
        return azure_errors(f"{action} (container {self.container_name!r})", self.credentials, missing=missing)

    def create_container(self) -> bool:
        """Create the container; True when it was created, False when it existed already."""
        from azure.core.exceptions import ResourceExistsError

        with self._errors(f"creating container {self.container_name!r}"):
            try:
                self._container.create_container()
            except ResourceExistsError:
                return False
        return True

    # -- the storage interface ---------------------------------------------------------------
    def read_path(self, path: str) -> bytes:
        """The bytes of the blob at ``path``; FileNotFoundError when there is none."""
        name = self.blob_name(path)
        with self._errors(f"reading {self._url(name)}", missing_blob=name):
            return bytes(self._blob(name).download_blob(max_concurrency=self.max_concurrency).readall())

    def write_path(self, path: str, content: bytes) -> str:
        """Write ``content`` as the blob at ``path`` (replacing it); return its name."""
        name = self.blob_name(path)
        with self._errors(f"writing {self._url(name)}"):
            self._blob(name).upload_blob(bytes(content), overwrite=True, max_concurrency=self.max_concurrency)
        return name

    def exists(self, path: str) -> bool:
        """True when a blob is stored at ``path``."""
        name = self.blob_name(path)
        with self._errors(f"checking {self._url(name)}"):
            return bool(self._blob(name).exists())

    def list_paths(self, prefix: str = "") -> list[str]:
        """Sorted paths (relative to ``container_folder``) of the blobs starting with ``prefix``."""
        return sorted(item["path"] for item in self.list_blobs(prefix))

    def delete_path(self, path: str) -> None:
        """Delete the blob at ``path`` (a missing blob is no error)."""
        self.delete_blob(path)

    # -- files and file objects --------------------------------------------------------------
    def upload_from_path(self, from_path: str | os.PathLike[str], to_path: str | None = None) -> str:
        """Upload a local file to ``to_path`` (default: the file's name); return the blob name."""
        source = Path(from_path).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"no file {source} to upload")
        with source.open("rb") as handle:
            return self.upload_from_file_object(handle, to_path if to_path is not None else source.name)

    def upload_from_file_object(self, file_obj: IO[bytes], to_path: str) -> str:
        """Upload a binary file object (read from its current position); return the blob name."""
        name = self.blob_name(to_path)
        with self._errors(f"uploading to {self._url(name)}"):
            self._blob(name).upload_blob(file_obj, overwrite=True, max_concurrency=self.max_concurrency)
        return name

    def download_to_path(self, from_path: str, to_path: str | os.PathLike[str] | None = None) -> Path:
        """Download the blob at ``from_path`` to a local file (default: its name in the current
        directory; parent directories are created); return the file's path."""
        name = self.blob_name(from_path)
        target = Path(to_path if to_path is not None else PurePosixPath(name).name).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        try:
            with partial.open("wb") as handle:
                self.download_to_file_object(from_path, handle)
            partial.replace(target)  # a failed download leaves no half-written file behind
        finally:
            partial.unlink(missing_ok=True)
        return target.resolve()

    def download_to_file_object(self, from_path: str, file_obj: IO[bytes]) -> IO[bytes]:
        """Write the blob at ``from_path`` into a binary file object; return that object."""
        name = self.blob_name(from_path)
        with self._errors(f"downloading {self._url(name)}", missing_blob=name):
            self._blob(name).download_blob(max_concurrency=self.max_concurrency).readinto(file_obj)
        return file_obj

    # -- listing -----------------------------------------------------------------------------
    def list_blobs(self, prefix: str = "", max_items: int | None = None) -> list[dict[str, Any]]:
        """Blobs whose path starts with ``prefix``, in name order, as JSON-friendly dicts:
        ``name`` (full), ``path`` (relative to the folder), ``size``, ``last_modified`` (ISO
        8601), ``etag``, ``content_type``. All of them, or the first ``max_items``."""
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be at least 1 (or None for all), got {max_items}")
        relative = _posix(prefix)
        full = f"{self.container_folder}/{relative}" if self.container_folder else relative
        found: list[dict[str, Any]] = []
        with self._errors(f"listing {self._url(full)}"):
            for item in self._container.list_blobs(name_starts_with=full or None):
                settings = getattr(item, "content_settings", None)
                found.append({
                    "name": item.name,
                    "path": self.relative_path(item.name),
                    "size": int(item.size or 0),
                    "last_modified": item.last_modified.isoformat() if item.last_modified else None,
                    "etag": str(item.etag or "").strip('"'),
                    "content_type": getattr(settings, "content_type", None),
                })
                if max_items is not None and len(found) >= max_items:
                    break
        return found

    # -- copying and deleting ------------------------------------------------------------------
    def copy_blob(
        self, from_path: str, to_path: str, to_container: AzureBlobStorageContainer | str | None = None
    ) -> str:
        """Copy a blob within this container, or into ``to_container`` (a container block,
        whose folder and credentials apply, or a container name in this account, where
        ``to_path`` is the full name); return the new blob's name.

        Within one account the copy is done by Azure; between accounts (other credentials) the
        bytes stream through this process.
        """
        target = self._target_container(to_container)
        source = self.blob_name(from_path)
        name = target.blob_name(to_path) if isinstance(to_container, AzureBlobStorageContainer) else \
            (_posix(to_path) if to_container is not None else self.blob_name(to_path))
        where = f"copying {self._url(source)} to az://{target.container_name}/{name}"
        if target.credentials.settings() != self.credentials.settings():
            with self._errors(where, missing_blob=source):
                stream = self._blob(source).download_blob(max_concurrency=self.max_concurrency)
                target._blob(name).upload_blob(stream.chunks(), overwrite=True, length=stream.size,
                                               max_concurrency=target.max_concurrency)
            return name
        with self._errors(where, missing_blob=source):
            destination = target._blob(name)
            destination.start_copy_from_url(self._source_url(source))
            self._wait_for_copy(destination, where)
        return name

    def _target_container(self, to_container: AzureBlobStorageContainer | str | None) -> AzureBlobStorageContainer:
        if to_container is None:
            return self
        if isinstance(to_container, AzureBlobStorageContainer):
            return to_container
        return AzureBlobStorageContainer(container_name=to_container, credentials=self.credentials,
                                         max_concurrency=self.max_concurrency)

    def _source_url(self, name: str) -> str:
        url = str(self._blob(name).url)
        form, values = self.credentials.settings()
        if form == "sas" and "?" not in url:  # the source of a copy is authorised by its URL
            url = f"{url}?{values['sas_token']}"
        return url

    @staticmethod
    def _wait_for_copy(destination: Any, where: str) -> None:
        deadline, pause = time.monotonic() + COPY_TIMEOUT, 0.2
        while True:
            copy = destination.get_blob_properties().copy
            if copy.status in (None, "success"):
                return
            if copy.status != "pending":
                reason = copy.status_description or "no reason given"
                raise AzureError(f"{where} failed: the copy ended {copy.status} ({reason})")
            if time.monotonic() > deadline:
                raise AzureError(f"{where} is still pending after {COPY_TIMEOUT:.0f} s (copy id {copy.id})")
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

    def delete_blob(self, path: str) -> str:
        """Delete the blob at ``path`` and its snapshots (no error when it is already gone);
        return its name."""
        from azure.core.exceptions import ResourceNotFoundError

        name = self.blob_name(path)
        with self._errors(f"deleting {self._url(name)}"):
            try:
                self._blob(name).delete_blob(delete_snapshots="include")
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) != "BlobNotFound":
                    raise
        return name

    def delete_blobs(self, paths: Iterable[str]) -> list[str]:
        """Delete many blobs (see ``delete_blob``); return their names."""
        return [self.delete_blob(p) for p in ([paths] if isinstance(paths, str) else paths)]


def _posix(path: str | os.PathLike[str]) -> str:
    return os.fspath(path).replace("\\", "/").lstrip("/")


# -- the az:// storage scheme ---------------------------------------------------------------------
DEFAULT_CREDENTIALS_NAME = "default"


def default_credentials() -> AzureBlobCredentials:
    """The saved ``AzureBlobCredentials`` block named ``default`` if there is one, else empty
    credentials (the ``AZURE_STORAGE_*`` environment variables)."""
    try:
        return AzureBlobCredentials.load(DEFAULT_CREDENTIALS_NAME)
    except BlockNotFound:
        return AzureBlobCredentials()


def az_container_from_url(url: str) -> AzureBlobStorageContainer:
    """The storage factory of the ``az`` scheme: ``az://container/folder`` ->
    ``AzureBlobStorageContainer``, with ``default_credentials()``."""
    parts = urlsplit(str(url))
    if parts.scheme.lower() != "az" or not parts.netloc:
        raise ValueError(f"{url!r} is not an az:// URL with a container; use e.g. 'az://my-container/plait-results'")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: az:// storage URLs take no '?' or '#' part")
    return AzureBlobStorageContainer(
        container_name=parts.netloc,
        container_folder=unquote(parts.path),
        credentials=default_credentials(),
    )
