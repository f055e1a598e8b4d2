"""Result persistence: serializers and the one small storage interface.

A storage is anything with ``read_path(path) -> bytes`` and ``write_path(path, content)``;
storage blocks implement it. A persisted result is a small JSON header line followed by the
serialized value, so expiry and serializer travel with the bytes and a second process can
read a cache entry without the database.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote
from typing import Any, Protocol, runtime_checkable

from plait.exceptions import PlaitError, SerializationError

__all__ = [
    "ReadableWritableStorage",
    "LocalStorage",
    "atomic_write",
    "SERIALIZERS",
    "resolve_storage",
    "register_storage_scheme",
    "write_result",
    "read_result",
    "read_result_ref",
]


@runtime_checkable
class ReadableWritableStorage(Protocol):
    """The storage interface results and caching use."""

    def read_path(self, path: str) -> bytes:
        """Return the bytes at ``path``; raise FileNotFoundError when there are none."""

    def write_path(self, path: str, content: bytes) -> Any:
        """Write ``content`` at ``path``, replacing what was there."""


TEMP_PREFIX = ".tmp-"


def atomic_write(full: Path, content: bytes) -> None:
    """Write ``content`` to ``full`` so readers see the old file or the new one, never half
    of it (temp file in the same directory, then rename); parents are created."""
    full.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=full.parent, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, full)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalStorage:
    """Files under a base directory; writes are atomic (temp file + rename)."""

    def __init__(self, basepath: str | Path) -> None:
        self.basepath = Path(basepath).expanduser().resolve()

    @property
    def uri(self) -> str:
        return self.basepath.as_uri()

    def _full(self, path: str) -> Path:
        full = (self.basepath / path).resolve()
        if self.basepath not in full.parents and full != self.basepath:
            raise ValueError(f"path {path!r} escapes the storage directory {self.basepath}")
        return full

    def read_path(self, path: str) -> bytes:
        return self._full(path).read_bytes()

    def write_path(self, path: str, content: bytes) -> str:
        full = self._full(path)
        atomic_write(full, content)
        return str(full)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.basepath)!r})"


# -- serializers ---------------------------------------------------------------------------
class JSONSerializer:
    name = "json"

    @staticmethod
    def dumps(value: Any) -> bytes:
        return json.dumps(value).encode()

    @staticmethod
    def loads(data: bytes) -> Any:
        return json.loads(data)


class PickleSerializer:
    name = "pickle"

    @staticmethod
    def dumps(value: Any) -> bytes:
        return pickle.dumps(value)

    @staticmethod
    def loads(data: bytes) -> Any:
        return pickle.loads(data)  # noqa: S301 - results are written by this project only


SERIALIZERS: dict[str, Any] = {"json": JSONSerializer, "pickle": PickleSerializer}

# -- storage resolution ----------------------------------------------------------------------
_SCHEME_FACTORIES: dict[str, Any] = {}
_RESOLVED: dict[str, Any] = {}


def register_storage_scheme(scheme: str, factory: Any) -> None:
    """Map ``scheme://...`` URLs to ``factory(url) -> storage`` (the storage hook feeds this)."""
    _SCHEME_FACTORIES[scheme] = factory
    _RESOLVED.clear()


def resolve_storage(spec: Any) -> Any:
    """Turn a path, URL or storage object into a storage with read_path/write_path."""
    if spec is None:
        from plait.settings import get_settings

        spec = get_settings().effective_result_storage
    if not isinstance(spec, (str, Path)):
        return spec
    text = str(spec)
    scheme, sep, rest = text.partition("://")
    if not sep or len(scheme) < 2:  # a plain path (or a Windows drive letter)
        scheme, rest = "file", text
    elif scheme == "file":
        rest = unquote(rest)
    factory = _SCHEME_FACTORIES.get(scheme)
    if factory is None:
        from plait.plugins import get_plugin_manager

        get_plugin_manager()  # plugins register their schemes while loading
        factory = _SCHEME_FACTORIES.get(scheme)
    if factory is not None:
        url = Path(rest).expanduser().resolve().as_uri() if scheme == "file" else text
        storage = _RESOLVED.get(url)
        if storage is None:  # factories may read saved blocks: build each URL's storage once
            storage = _RESOLVED[url] = factory(url)
        return storage
    if scheme == "file":  # the core's own fallback when no plugin provides file://
        return LocalStorage(rest)
    known = ", ".join(sorted({"file", *_SCHEME_FACTORIES}))
    raise PlaitError(
        f"no storage is registered for {scheme}:// (in {text!r}); known schemes: {known}. "
        f"Install a collection that provides {scheme}:// storage, or use a local path."
    )


def storage_uri(storage: Any) -> str:
    uri = getattr(storage, "uri", None)
    if uri:
        return str(uri).rstrip("/")
    raise PlaitError(
        f"result storage {storage!r} has no 'uri', so its results cannot be found again; "
        "give it a uri property or use a path/URL"
    )


# -- reading and writing results -------------------------------------------------------------
def write_result(
    storage: Any,
    key: str,
    value: Any,
    serializer: str,
    *,
    expires_at: datetime | None = None,
    owner: str = "",
) -> str:
    """Serialize ``value`` and write it at ``key``; return the result reference."""
    try:
        payload = SERIALIZERS[serializer].dumps(value)
    except Exception as exc:
        hint = "use result_serializer='pickle'" if serializer == "json" else "return a picklable value"
        raise SerializationError(
            f"{owner or 'the result'} returned a {type(value).__name__} that the {serializer!r} "
            f"serializer cannot write ({type(exc).__name__}: {exc}); {hint}, or set persist_result=False"
        ) from None
    header = {
        "serializer": serializer,
        "created": datetime.now(timezone.utc).isoformat(),
        "expires_at": expires_at.isoformat() if expires_at else None,
    }
    storage.write_path(key, json.dumps(header).encode() + b"\n" + payload)
    return f"{storage_uri(storage)}/{key}"


class ResultMissing(LookupError):
    """No stored result at the key (or it expired)."""


def read_result(storage: Any, key: str, *, now: datetime | None = None) -> Any:
    """Read the result at ``key``; raise ResultMissing when absent or expired."""
    try:
        blob = storage.read_path(key)
    except (FileNotFoundError, KeyError):
        raise ResultMissing(key) from None
    header_line, _, payload = blob.partition(b"\n")
    try:
        header = json.loads(header_line)
        serializer = SERIALIZERS[header["serializer"]]
    except (ValueError, KeyError, TypeError):
        raise ResultMissing(f"{key}: not a plait result") from None
    expires_at = header.get("expires_at")
    if expires_at and datetime.fromisoformat(expires_at) <= (now or datetime.now(timezone.utc)):
        raise ResultMissing(f"{key}: expired at {expires_at}")
    return serializer.loads(payload)


def read_result_ref(ref: str) -> Any:
    """Read a value back from a reference made by ``write_result``."""
    base, _, key = ref.rpartition("/")
    return read_result(resolve_storage(base), key)
