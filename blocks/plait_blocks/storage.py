"""``LocalFileSystem``: a directory as storage, and the ``file://`` URL scheme.

The plugin registers ``file`` as a storage scheme, so plain paths and ``file://`` URLs given
as ``result_storage`` (and the default ``$PLAIT_HOME/storage``) are served by this block.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

from pydantic import Field, field_validator

from plait.blocks import StorageBlock
from plait.results import TEMP_PREFIX, atomic_write

__all__ = ["LocalFileSystem", "local_file_system_from_url"]


class LocalFileSystem(StorageBlock):
    """Files under a directory on this machine; usable as result storage.

    Paths are relative to ``basepath`` and use ``/`` as separator. Writes are atomic (a
    temporary file in the same directory, then a rename), so a reader never sees half a
    file. A path that would leave ``basepath`` (``../x``, an absolute path, a symlink
    pointing outside) is refused with a ValueError.
    """

    block_type_slug: ClassVar[str] = "local-file-system"
    block_type_name: ClassVar[str] = "Local File System"
    capabilities: ClassVar[tuple[str, ...]] = ("read-path", "write-path", "list-paths", "delete-path")
    code_example: ClassVar[str] = """\
from plait import flow, task
from plait_blocks import LocalFileSystem

LocalFileSystem(basepath="/data/plait-results").save("results")

@task(persist_result=True, result_storage=LocalFileSystem.load("results"))
def extract() -> list[int]:
    return [1, 2, 3]

storage = LocalFileSystem.load("results")
storage.write_path("reports/today.txt", b"all good")
print(storage.list_paths("reports/"))
"""

    basepath: str = Field(
        description="Directory that holds the files (created on first write); '~' is expanded.",
        min_length=1,
    )

    @field_validator("basepath", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    # -- locations ---------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """``basepath`` as an absolute, resolved path."""
        return Path(self.basepath).expanduser().resolve()

    @property
    def uri(self) -> str:
        """``file://`` URL of ``basepath``; result references start with it."""
        return self.root.as_uri()

    def _full(self, path: str, *, allow_root: bool = False) -> Path:
        root = self.root
        relative = str(path).replace("\\", "/")
        if not relative.strip("/") and not allow_root:
            raise ValueError(f"path {path!r} does not name a file under {root}")
        full = (root / relative).resolve()
        if full != root and not full.is_relative_to(root):
            raise ValueError(
                f"path {path!r} escapes the storage directory {root}; "
                "use a path relative to basepath without '..'"
            )
        return full

    # -- the storage interface ---------------------------------------------------------
    def read_path(self, path: str) -> bytes:
        """The bytes stored at ``path``; FileNotFoundError when there are none."""
        return self._full(path).read_bytes()

    def write_path(self, path: str, content: bytes) -> str:
        """Atomically write ``content`` at ``path`` (parents created); return the file's path."""
        full = self._full(path)
        atomic_write(full, content)
        return str(full)

    def exists(self, path: str) -> bool:
        """True when a file is stored at ``path``."""
        return self._full(path).is_file()

    def delete_path(self, path: str) -> None:
        """Remove the file at ``path``; FileNotFoundError when there is none."""
        full = self._full(path)
        if full.is_dir():
            raise IsADirectoryError(f"{path!r} is a directory, not a stored file")
        full.unlink()

    def list_paths(self, prefix: str = "") -> list[str]:
        """Sorted paths (relative, ``/``-separated) of the stored files starting with ``prefix``."""
        prefix = str(prefix).replace("\\", "/").lstrip("/")
        directory = prefix.rpartition("/")[0]
        start = self._full(directory, allow_root=True)
        root = self.root
        if not start.is_dir():
            return []
        found = []
        for dirpath, _dirnames, filenames in os.walk(start):
            for name in filenames:
                if name.startswith(TEMP_PREFIX):  # a write in progress
                    continue
                relative = (Path(dirpath) / name).relative_to(root).as_posix()
                if relative.startswith(prefix):
                    found.append(relative)
        return sorted(found)


def local_file_system_from_url(url: str) -> LocalFileSystem:
    """The storage factory of the ``file`` scheme: ``file:///data/results`` (or a plain path)."""
    text = os.fspath(url)
    if not text.lower().startswith("file:"):
        return LocalFileSystem(basepath=text)
    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"{text!r} names host {parts.netloc!r}; file:// storage is local to this machine")
    return LocalFileSystem(basepath=url2pathname(parts.path))
