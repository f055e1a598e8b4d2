"""Result persistence: serializers and the one small storage interface.

A storage is anything with ``read_path(path) -> bytes`` and ``write_path(path, content)``;
storage blocks implement it. A persisted result is one signed file::

    PLAIT-RESULT-1 hmac-sha256:<64 hex digits>
    {"serializer": "pickle", "created": "...", "expires_at": null, "key": "...", "encryption": null}
    <payload: the serialized value, or a Fernet token of it>

so expiry and serializer travel with the bytes and a second process can read a cache entry
without the database. The signature is an HMAC-SHA256 over everything after the first line,
with a key derived from the encryption key (``plait._keys``): a file that is unsigned, was
changed, or was written for another key (its header names the key it was written at) is
refused with ``ResultRefused`` and never unpickled, so a planted pickle cannot run code.
Payloads are encrypted when asked, and always when the value holds pydantic secrets.
"""

from __future__ import annotations

import collections.abc
import functools
import hashlib
import hmac
import io
import itertools
import json
import os
import pickle
import tempfile
import types
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote

from plait._keys import DecryptError, signing_key
from plait._keys import decrypt as _decrypt
from plait._keys import encrypt as _encrypt
from plait._masking import secret_values
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
    "ResultMissing",
    "ResultRefused",
    "type_mismatch",
    "type_name",
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
    def dumps_noting_secrets(value: Any) -> tuple[bytes, bool]:
        """The bytes, and whether the value holds secrets (JSON cannot hold a SecretStr)."""
        return json.dumps(value).encode(), False

    @staticmethod
    def loads(data: bytes) -> Any:
        return json.loads(data)


def _is_secret(obj: Any) -> bool:
    """A pydantic SecretStr/SecretBytes/Secret (duck-typed: this module imports no pydantic)."""
    try:
        return not isinstance(obj, type) and callable(getattr(obj, "get_secret_value", None))
    except Exception:  # an object whose __getattr__ raises is not a secret
        return False


class _SecretSpotter(pickle.Pickler):
    """``pickle.dumps`` that also notes whether a pydantic secret is anywhere in the value.

    The C pickler calls ``reducer_override`` only for objects it has no fast path for
    (instances, classes, functions), never for the ints, strings, lists and dicts that make
    up most data, so the check costs almost nothing.
    """

    found = False

    def reducer_override(self, obj: Any) -> Any:
        if not self.found and _is_secret(obj):
            self.found = True
        return NotImplemented


class PickleSerializer:
    name = "pickle"

    @staticmethod
    def dumps(value: Any) -> bytes:
        return pickle.dumps(value)

    @staticmethod
    def dumps_noting_secrets(value: Any) -> tuple[bytes, bool]:
        """The bytes ``dumps`` would give, and whether the value holds pydantic secrets."""
        buffer = io.BytesIO()
        spotter = _SecretSpotter(buffer)
        spotter.dump(value)
        return buffer.getvalue(), spotter.found

    @staticmethod
    def loads(data: bytes) -> Any:
        # Only ever called on a file whose signature was checked (see read_result).
        return pickle.loads(data)  # noqa: S301


SERIALIZERS: dict[str, Any] = {"json": JSONSerializer, "pickle": PickleSerializer}

# -- storage resolution ----------------------------------------------------------------------
# scheme -> factory(url). Plugins fill it: at discovery with a lazy factory per scheme a plugin
# declares (importing the plugin on first use), and the real factory once the plugin loaded.
_SCHEME_FACTORIES: dict[str, Any] = {}
# "*": the finder asked once about a scheme nobody registered yet (plugin discovery).
_FINDER = "*"
_RESOLVED: dict[str, Any] = {}  # url -> storage, built once per URL


def register_storage_scheme(scheme: str, factory: Any) -> None:
    """Map ``scheme://...`` URLs to ``factory(url) -> storage``; ``factory=None`` removes it.

    Storages already built for the scheme are dropped. ``scheme="*"`` registers the finder:
    ``factory(scheme)`` is called when a URL names a scheme nobody registered, and may
    register it (plait's plugin manager discovers plugins then). Registering a finder drops
    every built storage.
    """
    if factory is None:
        _SCHEME_FACTORIES.pop(scheme, None)
    else:
        _SCHEME_FACTORIES[scheme] = factory
    if scheme == _FINDER:
        _RESOLVED.clear()
        return
    prefix = f"{scheme}://"
    for url in [u for u in _RESOLVED if u.startswith(prefix)]:
        del _RESOLVED[url]


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
    if factory is None and scheme != _FINDER and _FINDER in _SCHEME_FACTORIES:
        _SCHEME_FACTORIES[_FINDER](scheme)  # e.g. plugins discovered now register their schemes
        factory = _SCHEME_FACTORIES.get(scheme)
    if factory is not None:
        url = Path(rest).expanduser().resolve().as_uri() if scheme == "file" else text
        storage = _RESOLVED.get(url)
        if storage is None:  # factories may read saved blocks: build each URL's storage once
            storage = _RESOLVED[url] = factory(url)
        return storage
    if scheme == "file":  # the core's own fallback when no plugin provides file://
        return LocalStorage(rest)
    known = ", ".join(sorted({"file", *_SCHEME_FACTORIES} - {_FINDER}))
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
MAGIC = b"PLAIT-RESULT-1 hmac-sha256:"


class ResultMissing(LookupError):
    """No stored result at the key (or it expired)."""


class ResultRefused(PlaitError):
    """A stored result that is not read: unsigned, changed, or written with another key.

    Attributes:
        where: The file (``<storage uri>/<key>``).
        reason: Why it was refused.
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"result file {where} was not read: {reason}")
        self.where, self.reason = where, reason


def _where(storage: Any, key: str) -> str:
    try:
        return f"{storage_uri(storage)}/{key}"
    except PlaitError:
        return f"{key} in {storage!r}"


def _signature(body: bytes | memoryview) -> bytes:
    return hmac.new(signing_key(), body, hashlib.sha256).hexdigest().encode("ascii")


def write_result(
    storage: Any,
    key: str,
    value: Any,
    serializer: str,
    *,
    expires_at: datetime | None = None,
    owner: str = "",
    encrypt: bool = False,
) -> str:
    """Serialize ``value``, sign it, and write it at ``key``; return the result reference.

    Args:
        encrypt: Encrypt the payload with the encryption key. Values holding pydantic
            secrets (``SecretStr``, blocks with secret fields) are encrypted regardless.
    """
    chosen = SERIALIZERS[serializer]
    try:
        noting = getattr(chosen, "dumps_noting_secrets", None)
        if noting is not None:
            payload, holds_secrets = noting(value)
        else:  # a serializer of someone else's: look for secrets the slow way
            payload, holds_secrets = chosen.dumps(value), bool(secret_values(value))
    except Exception as exc:
        hint = "use result_serializer='pickle'" if serializer == "json" else "return a picklable value"
        raise SerializationError(
            f"{owner or 'the result'} returned a {type(value).__name__} that the {serializer!r} "
            f"serializer cannot write ({type(exc).__name__}: {exc}); {hint}, or set persist_result=False"
        ) from None
    encryption = None
    if encrypt or holds_secrets:
        payload, encryption = _encrypt(payload), "fernet"
    header = {
        "serializer": serializer,
        "created": datetime.now(UTC).isoformat(),
        "expires_at": expires_at.isoformat() if expires_at else None,
        "key": key,
        "encryption": encryption,
    }
    header_line = json.dumps(header).encode()
    mac = hmac.new(signing_key(), header_line, hashlib.sha256)
    mac.update(b"\n")
    mac.update(payload)  # no copy of the payload just to sign it
    signature = mac.hexdigest().encode("ascii")
    storage.write_path(key, b"".join((MAGIC, signature, b"\n", header_line, b"\n", payload)))
    return f"{storage_uri(storage)}/{key}"


def read_result(storage: Any, key: str, *, now: datetime | None = None, ref: str | None = None) -> Any:
    """Read the result at ``key``, checking its signature before anything is deserialized.

    Args:
        ref: The reference it is read through, when there is one (``read_result_ref``).

    Raises:
        ResultMissing: Nothing at ``key``, or it expired.
        ResultRefused: The file is unsigned, was changed, belongs to another key, or cannot
            be decrypted with this key; nothing in it was unpickled.
    """
    try:
        blob = storage.read_path(key)
    except (FileNotFoundError, KeyError):
        raise ResultMissing(key) from None

    def refuse(reason: str) -> ResultRefused:
        return ResultRefused(ref or _where(storage, key), reason)  # the file's name only when needed

    blob = bytes(blob)
    first_end = blob.find(b"\n")
    if not blob.startswith(MAGIC) or first_end < 0:
        raise refuse("it carries no signature (written by an older plait, or not by plait)")
    body = memoryview(blob)[first_end + 1:]
    if not hmac.compare_digest(blob[len(MAGIC):first_end], _signature(body)):
        raise refuse("its signature does not match: it was changed after plait wrote it, or written with "
                     "another encryption key (processes sharing result storage need the same "
                     "PLAIT_ENCRYPTION_KEY or PLAIT_HOME)")
    header_end = blob.find(b"\n", first_end + 1)
    try:
        header = json.loads(blob[first_end + 1:header_end])
        serializer = SERIALIZERS[header["serializer"]]
        written_at = header["key"]
    except (ValueError, KeyError, TypeError):
        raise refuse("its header is not one this version of plait reads") from None
    if written_at != key and not (ref and ref.endswith("/" + str(written_at))):
        raise refuse(f"it was written as {written_at!r} and copied here")
    expires_at = header.get("expires_at")
    if expires_at and datetime.fromisoformat(expires_at) <= (now or datetime.now(UTC)):
        raise ResultMissing(f"{key}: expired at {expires_at}")
    payload = blob[header_end + 1:]
    if header.get("encryption") == "fernet":
        try:
            payload = _decrypt(payload)
        except DecryptError:
            raise refuse("its payload does not decrypt with this encryption key") from None
    elif header.get("encryption") is not None:
        raise refuse(f"it is encrypted with {header['encryption']!r}, which this plait does not know")
    return serializer.loads(payload)


def read_result_ref(ref: str) -> Any:
    """Read a value back from a reference made by ``write_result``."""
    base, _, key = ref.rpartition("/")
    return read_result(resolve_storage(base), key, ref=ref)


# -- checking a cached value against the declared return type ------------------------------------
_MAX_ITEMS = 1000  # items of a container that are checked; the rest are trusted
_UNION_TYPES = (typing.Union, types.UnionType)
Check = typing.Callable[[Any], "str | None"]  # value -> None when it fits, else what is wrong


def type_mismatch(value: Any, annotation: Any) -> str | None:
    """None when ``value`` fits ``annotation``, else what is wrong, e.g. ``"[3] is a str, not int"``.

    The check is ``isinstance`` deep: classes (``int`` also fits ``float``), ``None``,
    ``Optional``/unions, ``Literal``, ``Annotated``, and the items of ``list[...]``,
    ``set[...]``, ``tuple[...]``, ``dict[..., ...]`` and their ``collections.abc`` kin (up to
    1,000 items each). What it cannot check (type variables, protocols, callables, strings
    that name types) counts as fitting. The annotation is turned into a checker once.
    """
    try:
        check = _cached_checker(annotation)
    except TypeError:  # an unhashable annotation (Literal of a list...): build it each time
        check = _checker(annotation, 0)
    return None if check is None else check(value)


def _a(name: str) -> str:
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _at(where: str, problem: str) -> str:
    """``problem`` of the item at ``where`` (``[2]``), paths joined: ``[1][0] is a str, not int``."""
    return where + problem if problem.startswith("[") else f"{where} is {problem}"


def type_name(annotation: Any) -> str:
    """How an annotation reads in messages: ``int``, ``list[int]``, ``Optional[dict[str, int]]``."""
    if annotation is None or annotation is type(None):
        return "None"
    generic = isinstance(annotation, types.GenericAlias)  # list[int] passes isinstance(_, type) too
    if isinstance(annotation, type) and not generic:
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


@functools.lru_cache(maxsize=512)
def _cached_checker(annotation: Any) -> Check | None:
    return _checker(annotation, 0)


def _checker(hint: Any, depth: int) -> Check | None:
    """A function checking values against ``hint``, or None when anything fits."""
    if depth > 10 or hint is Any or hint is object or isinstance(hint, (str, typing.TypeVar, typing.ForwardRef)):
        return None
    if hint is None or hint is type(None):
        return lambda value: None if value is None else f"{_a(type(value).__qualname__)}, not None"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated or origin in (typing.ClassVar, typing.Final):
        return _checker(args[0], depth) if args else None
    if origin in _UNION_TYPES:
        return _union_checker(hint, [_checker(arg, depth + 1) for arg in args])
    if origin is typing.Literal:
        return lambda value: None if value in args else f"{value!r:.80}, not one of {args!r:.80}"
    if origin is None:
        return _class_checker(hint, depth)
    if not isinstance(origin, type):
        return None
    return _generic_checker(hint, origin, args, depth)


def _union_checker(hint: Any, checks: list[Check | None]) -> Check | None:
    if any(check is None for check in checks):
        return None
    name = type_name(hint)

    def check(value: Any) -> str | None:
        if any(c(value) is None for c in checks):  # type: ignore[misc]
            return None
        return f"{_a(type(value).__qualname__)}, not {name}"

    return check


def _isinstance_checker(accepted: Any, name: str) -> Check | None:
    try:
        isinstance(None, accepted)
    except TypeError:  # a protocol that is not runtime-checkable, and the like
        return None

    def check(value: Any) -> str | None:
        return None if isinstance(value, accepted) else f"{_a(type(value).__qualname__)}, not {name}"

    check.accepted = accepted  # type: ignore[attr-defined]  # lets containers loop fast
    return check


def _class_checker(hint: Any, depth: int) -> Check | None:
    supertype = getattr(hint, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return _checker(supertype, depth + 1)
    if not isinstance(hint, type):
        return None
    accepted: Any = hint
    if typing.is_typeddict(hint):
        accepted = dict
    elif hint is float:  # int fits float, and both fit complex (PEP 484's numeric tower)
        accepted = (int, float)
    elif hint is complex:
        accepted = (int, float, complex)
    return _isinstance_checker(accepted, type_name(hint))


def _items(check: Check, values: Any, labels: Any) -> str | None:
    """The first item of ``values`` (up to _MAX_ITEMS) that does not fit, by its label."""
    accepted = getattr(check, "accepted", None)
    if accepted is not None:  # the common case, looped in C: every item a plain instance
        head = list(itertools.islice(values, _MAX_ITEMS))
        if all(map(isinstance, head, itertools.repeat(accepted))):
            return None
        values = head
    for label, item in zip(labels, itertools.islice(values, _MAX_ITEMS), strict=False):
        if accepted is not None and isinstance(item, accepted):
            continue
        problem = check(item)
        if problem is not None:
            return _at(f"[{label!r:.40}]" if not isinstance(label, int) else f"[{label}]", problem)
    return None


def _generic_checker(hint: Any, origin: type, args: tuple[Any, ...], depth: int) -> Check | None:
    outer = _isinstance_checker(origin, type_name(hint))
    if outer is None:
        return None
    inner: Check | None = None
    if issubclass(origin, tuple) and args:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _checker(args[0], depth + 1)
            inner = None if item is None else (lambda value: _items(item, value, itertools.count()))  # type: ignore[arg-type]
        elif args == ((),):
            inner = lambda value: None if not value else f"a tuple of {len(value)} items, not an empty tuple"  # noqa: E731
        else:
            positions = [_checker(arg, depth + 1) for arg in args]

            def inner(value: Any) -> str | None:
                if len(value) != len(positions):
                    return f"a tuple of {len(value)} items, not {len(positions)}"
                for index, (check, item) in enumerate(zip(positions, value, strict=True)):
                    problem = None if check is None else check(item)
                    if problem is not None:
                        return _at(f"[{index}]", problem)
                return None
    elif issubclass(origin, collections.abc.Mapping) and len(args) == 2:
        keys, values = _checker(args[0], depth + 1), _checker(args[1], depth + 1)
        if keys is not None or values is not None:

            def inner(value: Any) -> str | None:
                if keys is not None:
                    for key in itertools.islice(value, _MAX_ITEMS):
                        problem = keys(key)
                        if problem is not None:
                            return f"the key {key!r:.40} is {problem}"
                return None if values is None else _items(values, value.values(), value.keys())
    elif len(args) == 1 and issubclass(origin, collections.abc.Iterable) and not issubclass(origin, (str, bytes)):
        item = _checker(args[0], depth + 1)
        if item is not None:

            def inner(value: Any) -> str | None:
                if not isinstance(value, (list, tuple, set, frozenset, collections.deque)):
                    return None  # an iterator or generator: reading it would consume it
                return _items(item, value, itertools.count())

    def check(value: Any) -> str | None:
        problem = outer(value)
        if problem is not None or inner is None:
            return problem
        return inner(value)

    return check
