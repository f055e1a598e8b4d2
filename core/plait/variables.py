"""Variables: named JSON values that flows, deployments and blocks files read.

    from plait import variables

    variables.set("warehouse", {"schema": "analytics", "threads": 4})
    variables.get("warehouse")                 # {'schema': 'analytics', 'threads': 4}
    variables.get("missing", default="none")   # 'none'
    variables.set("warehouse", {"schema": "staging"}, overwrite=True)
    variables.unset("warehouse")               # True (False: there was none)

A name is 1 to 255 lower-case letters, digits, ``_`` or ``-``. A value is JSON: a dict
(text keys), list, str, int, float, bool or None, at most ``MAX_VALUE_CHARS`` characters
as JSON text. Values are **not secrets**: they are stored, listed and shown in the clear;
keep passwords and tokens in a Secret block.

With ``PLAIT_API_URL`` set, every call goes to that server (``/api/v1/variables``);
otherwise to the local store. ``aget``/``aset``/``aunset`` are the same calls for async
code. ``"${var:name}"`` in ``plait.yaml`` and in blocks files is replaced by the
variable's value (``substitute_references``).
"""

from __future__ import annotations

import asyncio
import builtins
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait._api import ApiCalls, Call
    from plait._store.database import Database

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_VALUE_CHARS",
    "NAME_PATTERN",
    "VariableExists",
    "aget",
    "aset",
    "aunset",
    "get",
    "inspect",
    "list",
    "ls",
    "set",
    "substitute_references",
    "unset",
]

NAME_PATTERN = r"^[a-z0-9_-]{1,255}$"
MAX_NAME_LENGTH = 255
MAX_VALUE_CHARS = 5000  # as Prefect: a variable is configuration, not data
_MAX_TAGS = 50
_MAX_DEPTH = 64
_NAME = re.compile(NAME_PATTERN)
_REF = re.compile(r"(\$?)\$\{var:([^}]*)\}")
_REF_WHOLE = re.compile(r"^\$\{var:([^}]*)\}$")


class VariableExists(ValueError):
    """``set`` refused: a variable of that name exists and ``overwrite`` was not asked for."""


# -- checks ----------------------------------------------------------------------------------------
def check_name(name: Any) -> str:
    """``name`` when it is a valid variable name.

    Raises:
        ValueError: It is not (the message says what a name may hold).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        long = isinstance(name, str) and len(name) > 80
        shown = f"{name[:40]!r}... ({len(name)} characters)" if long else repr(name)
        raise ValueError(f"a variable's name is 1 to {MAX_NAME_LENGTH} lower-case letters, digits, '_' or '-' "
                         f"(e.g. 'warehouse_schema'), not {shown}")
    return name


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "a NUL character, which no database stores"
    if not text.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return "an unpaired surrogate code point (e.g. \\ud800), which is not valid UTF-8"
    return None


def _value_problem(value: Any, where: str, depth: int = 0) -> str | None:
    """Why ``value`` is no JSON value plait stores (None: it is one)."""
    if depth > _MAX_DEPTH:
        return f"it is nested more than {_MAX_DEPTH} levels deep (at {where})"
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} at {where} is not a JSON number"
    if isinstance(value, str):
        bad = _bad_text(value)
        return f"the text at {where} holds {bad}" if bad else None
    if isinstance(value, builtins.list):
        for i, item in enumerate(value):
            problem = _value_problem(item, f"{where}[{i}]", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"the key {key!r} at {where} is a {type(key).__name__}; JSON keys are text"
            bad = _bad_text(key)
            if bad:
                return f"the key {key!r} at {where} holds {bad}"
            problem = _value_problem(item, f"{where}.{key}", depth + 1)
            if problem:
                return problem
        return None
    return f"{where} is a {type(value).__name__}"


def check_value(name: str, value: Any) -> Any:
    """``value`` when it can be the value of the variable ``name``.

    Raises:
        ValueError: It is not JSON (a dict with text keys, list, str, int, float, bool or
            None), or too long; the message names the variable.
    """
    problem = _value_problem(value, "the value")
    if problem:
        raise ValueError(f"variable {name!r}: a value is JSON (a dict with text keys, list, str, int, float, bool "
                         f"or None): {problem}. Convert it first (e.g. a datetime to its isoformat() text)")
    size = len(json.dumps(value, ensure_ascii=False))
    if size > MAX_VALUE_CHARS:
        raise ValueError(f"variable {name!r}: its value is {size:,} characters as JSON; at most {MAX_VALUE_CHARS:,} "
                         "are kept (store larger data as a result or in a storage block)")
    return value


def check_tags(tags: Any) -> builtins.list[str] | None:
    """``tags`` as a list of texts (None stays None).

    Raises:
        ValueError: They are not a list of 1 to 255 characters long texts.
    """
    if tags is None:
        return None
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise ValueError(f"a variable's tags are a list of texts, e.g. ['team-data'], not {tags!r}")
    out = builtins.list(dict.fromkeys(tags))
    if len(out) > _MAX_TAGS:
        raise ValueError(f"a variable has at most {_MAX_TAGS} tags, not {len(out)}")
    for tag in out:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > 255 or _bad_text(tag):
            raise ValueError(f"a variable's tag is a text of 1 to 255 characters, not {tag!r}")
    return out


# -- where the variables are -------------------------------------------------------------------------
def _remote() -> bool:
    from plait.settings import get_settings

    return get_settings().api_url is not None


def _db() -> Database:
    from plait._store.database import get_database

    return get_database()


def _path(name: str) -> str:
    from plait._api._core import segment

    return f"/variables/by-name/{segment(name, 'name')}"


def _get_call(calls: ApiCalls, name: str) -> Call[dict[str, Any]]:
    from plait._api._core import as_dict

    return calls.call("GET", _path(name), as_dict)


def _set_call(calls: ApiCalls, name: str, value: Any, tags: builtins.list[str] | None,
              overwrite: bool) -> Call[dict[str, Any]]:
    from plait._api._core import as_dict

    body: dict[str, Any] = {"value": value, "overwrite": overwrite}
    if tags is not None:
        body["tags"] = tags
    return calls.call("PUT", _path(name), as_dict, body=body)


def _unset_call(calls: ApiCalls, name: str) -> Call[dict[str, Any]]:
    from plait._api._core import as_dict

    return calls.call("DELETE", _path(name), as_dict)


def _list_call(calls: ApiCalls) -> Call[builtins.list[dict[str, Any]]]:
    from plait._api._core import as_list

    return calls.call("GET", "/variables", as_list)


def _absent(exc: Exception) -> bool:
    """Whether ``exc`` is the server saying it has no such variable (an old server without
    the variables API answers another 404, which is an error)."""
    from plait._api import ApiError, ApiNotFound

    if isinstance(exc, ApiNotFound) and exc.code == "variable_not_found":
        return True
    if isinstance(exc, ApiNotFound):
        raise ApiError(f"the plait server has no variables API ({exc.message}); upgrade the server",
                       status=exc.status, code=exc.code) from None
    return False


def _refused(exc: Exception) -> Exception:
    """The server's refusal as the error a local call raises."""
    from plait._api import ApiError

    if isinstance(exc, ApiError) and exc.code == "variable_exists":
        return VariableExists(exc.message)
    if isinstance(exc, ApiError) and exc.status == 422:
        return ValueError(exc.message)
    return exc


def _sync_remote(make: Callable[[ApiCalls], Call[Any]]) -> Any:
    from plait._api import ApiSession

    with ApiSession.from_settings() as session:
        return session.call(make(session.calls))


async def _async_remote(make: Callable[[ApiCalls], Call[Any]]) -> Any:
    from plait._api import AsyncApiSession

    async with AsyncApiSession.from_settings() as session:
        return await session.call(make(session.calls))


# -- the API -----------------------------------------------------------------------------------------
def inspect(name: str) -> dict[str, Any] | None:
    """The variable ``name`` whole: ``{id, name, value, tags, created, updated}``, or None.

    Raises:
        ValueError: The name is malformed.
        plait.exceptions.DatabaseError: (local) The store cannot be read.
        plait.client.ApiError: (``PLAIT_API_URL``) The server refused or did not answer.
    """
    check_name(name)
    if not _remote():
        from plait._store.variables import get_variable

        return get_variable(_db(), name)
    try:
        found: dict[str, Any] = _sync_remote(lambda calls: _get_call(calls, name))
    except Exception as exc:
        if _absent(exc):
            return None
        raise
    return found


def get(name: str, default: Any = None) -> Any:
    """The value of the variable ``name``, or ``default`` when there is none.

    Raises:
        ValueError: The name is malformed (the message says what a name may hold).
        plait.exceptions.DatabaseError: (local) The store cannot be read.
        plait.client.ApiError: (``PLAIT_API_URL``) The server refused or did not answer.
    """
    found = inspect(name)
    return default if found is None else found["value"]


def set(name: str, value: Any, *, overwrite: bool = False, tags: Sequence[str] | None = None) -> dict[str, Any]:
    """Store ``value`` as the variable ``name``; emits ``variable.created`` or ``variable.updated``.

    Args:
        name: 1 to 255 lower-case letters, digits, ``_`` or ``-``.
        value: JSON: a dict with text keys, list, str, int, float, bool or None.
        overwrite: Replace the value of an existing variable (otherwise it is refused).
        tags: Its tags; None keeps an existing variable's tags.

    Returns:
        The variable: ``{id, name, value, tags, created, updated}``.

    Raises:
        VariableExists: It exists and ``overwrite`` is False (a ``ValueError``).
        ValueError: The name, value or tags are malformed (the message names the variable).
        plait.exceptions.DatabaseError: (local) The store cannot be written.
        plait.client.ApiError: (``PLAIT_API_URL``) The server refused or did not answer.
    """
    check_name(name)
    check_value(name, value)
    checked = check_tags(tags)
    if not _remote():
        from plait._store import variables as stored  # SQLAlchemy only when the local store is used

        try:
            return stored.set_variable(_db(), name, value, tags=checked, overwrite=overwrite)[0]
        except stored.VariableExists as exc:
            raise VariableExists(str(exc)) from None
    try:
        saved: dict[str, Any] = _sync_remote(lambda calls: _set_call(calls, name, value, checked, overwrite))
    except Exception as exc:
        raise _refused(exc) from None
    return saved


def unset(name: str) -> bool:
    """Delete the variable ``name``; emits ``variable.deleted``.

    Returns:
        True when it existed, False when there was none.

    Raises:
        ValueError: The name is malformed.
        plait.exceptions.DatabaseError: (local) The store cannot be written.
        plait.client.ApiError: (``PLAIT_API_URL``) The server refused or did not answer.
    """
    check_name(name)
    if not _remote():
        from plait._store.variables import delete_variable

        return delete_variable(_db(), name) is not None
    try:
        _sync_remote(lambda calls: _unset_call(calls, name))
    except Exception as exc:
        if _absent(exc):
            return False
        raise
    return True


def ls() -> builtins.list[dict[str, Any]]:
    """Every variable by name: ``{id, name, value, tags, created, updated}``.

    Raises:
        plait.exceptions.DatabaseError: (local) The store cannot be read.
        plait.client.ApiError: (``PLAIT_API_URL``) The server refused or did not answer.
    """
    if not _remote():
        from plait._store.variables import list_variables

        return list_variables(_db())
    found: builtins.list[dict[str, Any]] = _sync_remote(_list_call)
    return found


list = ls  # noqa: A001  (as Prefect's and the CLI's word; the builtin stays builtins.list)


async def aget(name: str, default: Any = None) -> Any:
    """``get`` for async code (the same arguments, result and errors)."""
    check_name(name)
    if not _remote():
        return await asyncio.to_thread(get, name, default)
    try:
        found = await _async_remote(lambda calls: _get_call(calls, name))
    except Exception as exc:
        if _absent(exc):
            return default
        raise
    return found["value"]


async def aset(name: str, value: Any, *, overwrite: bool = False,
               tags: Sequence[str] | None = None) -> dict[str, Any]:
    """``set`` for async code (the same arguments, result and errors)."""
    check_name(name)
    check_value(name, value)
    checked = check_tags(tags)
    if not _remote():
        return await asyncio.to_thread(set, name, value, overwrite=overwrite, tags=checked)
    try:
        saved: dict[str, Any] = await _async_remote(lambda calls: _set_call(calls, name, value, checked, overwrite))
    except Exception as exc:
        raise _refused(exc) from None
    return saved


async def aunset(name: str) -> bool:
    """``unset`` for async code (the same arguments, result and errors)."""
    check_name(name)
    if not _remote():
        return await asyncio.to_thread(unset, name)
    try:
        await _async_remote(lambda calls: _unset_call(calls, name))
    except Exception as exc:
        if _absent(exc):
            return False
        raise
    return True


# -- ${var:name} in files ----------------------------------------------------------------------------
def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def substitute_references(
    value: Any, where: str, missing: builtins.list[tuple[str, str]], *, known: dict[str, Any] | None = None
) -> Any:
    """``value`` with each ``"${var:name}"`` replaced by the variable's value.

    A string that is exactly ``${var:name}`` becomes the value itself (a dict, a number...);
    inside a longer string the value is put as text (JSON for what is not text).
    ``$${var:name}`` is the literal text ``${var:name}``. Dicts and lists are walked.

    Args:
        where: The field ``value`` is at (``"parameters.days"``), for messages.
        missing: Gets ``(name, field)`` for each variable that does not exist (it is
            replaced by None or ""), so a caller can name them all at once.
        known: Values read so far (each variable is read once per file).

    Raises:
        ValueError: A reference names no valid variable name, or has no closing brace.
        plait.exceptions.DatabaseError | plait.client.ApiError: The variables cannot be read.
    """
    cache: dict[str, Any] = {} if known is None else known
    absent = object()

    def lookup(name: str, whole: str) -> Any:
        name = name.strip()
        if not _NAME.match(name):
            raise ValueError(f"field {where!r}: {whole!r} does not name a variable (use ${{var:name}} with "
                             "lower-case letters, digits, '_' and '-')")
        if name not in cache:
            cache[name] = get(name, absent)
        if cache[name] is absent:
            missing.append((name, where))
        return cache[name]

    if isinstance(value, str):
        if "${var:" not in value:
            return value
        whole = _REF_WHOLE.match(value)
        if whole:
            found = lookup(whole.group(1), value)
            return None if found is absent else found
        for opener in re.finditer(r"(\$?)\$\{var:", value):
            if not opener.group(1) and _REF.match(value, opener.start()) is None:
                raise ValueError(f"field {where!r}: '${{var:' has no closing '}}'; write ${{var:name}} "
                                 "(or $${var:...} for the literal text)")

        def replace(match: re.Match[str]) -> str:
            if match.group(1):
                return match.group(0)[1:]
            found = lookup(match.group(2), match.group(0))
            return "" if found is absent else _as_text(found)

        return _REF.sub(replace, value)
    if isinstance(value, dict):
        return {k: substitute_references(v, f"{where}.{k}" if where else str(k), missing, known=cache)
                for k, v in value.items()}
    if isinstance(value, builtins.list):
        return [substitute_references(v, f"{where}[{i}]", missing, known=cache) for i, v in enumerate(value)]
    return value
