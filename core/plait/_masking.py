"""The one masking function, ``mask(text)``, and the registry of secret values it masks.

Everything plait stores or shows goes through ``mask``: log lines (stored and console),
state messages, recorded parameters, CLI output and error messages. Collections and user
code call it by its public name, ``plait.mask_secrets`` (and ``plait.mask_url``); they keep
no masking of their own. Its rules:

- Each registered secret is masked as ``***`` in every form text usually holds it in: as
  it is, ``repr``-escaped (``'a\\\\b'``, ``\\'``), JSON-escaped (``\\"``, ``\\uXXXX``),
  URL-encoded, as the ``repr`` of its UTF-8 bytes, and each of those escaped once more;
  every line of a multi-line secret (a PEM key) is masked too.
- A secret that is a URL with a password (``postgresql://user:pw@host:5432/db``) has only
  its password (and password-like query values) masked: ``postgresql://user:***@host:5432/db``
  keeps the host and database a reader needs. Other secret URLs (webhook URLs, which carry
  their token in the path) are masked whole.
- Secrets shorter than ``TOKEN_LENGTH`` (8) characters are masked only as whole tokens (not
  touching a letter, digit or ``_``), so a 4-character password never rewrites the words it
  happens to be part of. Values shorter than ``MIN_LENGTH`` (4) are masked only where they
  are the whole text (a parameter's value), never inside other text.
- Where several secrets overlap (one contains another, or two overlap), the union is masked,
  so no part of the longer one stays visible.
- A secret URL without a password is masked whole, and its password-like query values
  (``token=...``) on their own too.
- Secrets of one call (``mask(text, extra=[block])``: texts, or objects whose pydantic secrets
  count) are masked like registered ones, at any length, without being registered.

Speed: ``mask`` runs on every log line. A line without secrets costs one search of a
compiled regex (a trie of the first 10 characters of every form), whatever the number of
registered secrets; only a line that may hold one takes the exact, slower path. The regex
is rebuilt when enough new secrets arrived, so registering stays cheap too.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, MutableSequence
from typing import Any, NamedTuple
from urllib.parse import quote, quote_plus, unquote

__all__ = [
    "MASK",
    "MIN_LENGTH",
    "TOKEN_LENGTH",
    "forget_secrets",
    "mask",
    "mask_secrets",
    "mask_url",
    "register_secret",
    "registered_secrets",
    "secret_values",
    "wait_for_rebuild",
]

MASK = "***"
MIN_LENGTH = 4
TOKEN_LENGTH = 8
_PREFIX = 10  # the detector regex holds this many leading characters of each form
_SENSITIVE_QUERY = re.compile(r"pass|pwd|secret|token|key|signature|sig$|auth|credential", re.IGNORECASE)
# scheme://user:password@host...: the password runs to the first "@" followed by a host
# (no "@", "/", "?" or "#"), so an unencoded "@" or "/" in a password is still found.
_URL_WITH_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*):(?P<password>[^\s]*?)@(?P<tail>[^@/?#\s]*(?:[/?#]\S*)?)\Z"
)
# The same for ``mask_url``, whose whole argument is one URL: there a user, password or
# database may hold whitespace (SQLAlchemy renders "my pw" unescaped), and it is still masked.
# A registered secret keeps the strict form: a value with spaces after a URL is masked whole.
_ONE_URL_WITH_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@]*):(?P<password>.*?)@(?P<tail>[^@/?#]*(?:[/?#].*)?)\Z",
    re.DOTALL,
)


class _Form(NamedTuple):
    """One text to look for, what replaces it, and whether it must be a whole token."""

    text: str
    replacement: str
    token: bool


# -- the forms of a secret ----------------------------------------------------------------------
def _escapes(value: str) -> list[str]:
    """``value`` as text usually holds it: plain, repr/JSON/URL-escaped, and escaped twice."""
    first = [value, repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             quote(value, safe="", errors="replace"), quote_plus(value, safe="", errors="replace"),
             repr(value.encode("utf-8", "replace"))[2:-1]]
    # repr picks its quote character by content; text quoting it the other way escapes both.
    first.append(value.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"'))
    out = dict.fromkeys(first)
    for text in first[1:]:
        if text != value:
            out.update(dict.fromkeys((repr(text)[1:-1], json.dumps(text)[1:-1])))
    return [text for text in out if text]


def _url_parts(value: str, pattern: re.Pattern[str] = _URL_WITH_PASSWORD) -> tuple[str, str, str] | None:
    """``(head, password, tail)`` of a URL with a password, else None."""
    match = pattern.match(value.strip())
    if match is None or not match.group("password"):
        return None
    return match.group("head"), match.group("password"), match.group("tail")


def _query_secrets(url: str) -> list[tuple[str, str]]:
    """``(name, value)`` of password-like query parameters (``?password=...&token=...``)."""
    query = url.partition("?")[2].partition("#")[0]
    found = []
    for pair in query.split("&"):
        name, sep, val = pair.partition("=")
        if sep and val and _SENSITIVE_QUERY.search(name):
            found.append((name, val))
    return found


def _query_forms(url: str) -> tuple[list[_Form], list[str]]:
    """Forms masking password-like query values in context (``token=***``, any length), and
    the values themselves."""
    pairs = _query_secrets(url)
    return [_Form(f"{name}={val}", f"{name}={MASK}", False) for name, val in pairs], [val for _, val in pairs]


def _forms(value: str, local: bool = False) -> list[_Form]:
    """Everything to mask for the secret ``value``.

    ``local`` secrets (given to one ``mask`` call) are masked at any length, and a URL's
    path and query count as secret too (a notification error may quote only those).
    """
    pieces: list[str] = []
    forms: list[_Form] = []
    parts = _url_parts(value)
    if parts is not None:
        _head, password, tail = parts
        # In context, even a 1-character password is safe to mask.
        forms.append(_Form(f":{password}@", f":{MASK}@", False))
        query_forms, query_values = _query_forms(tail)
        forms += query_forms
        pieces += [password, unquote(password), *query_values]
    else:
        pieces.append(value)
        if "://" in value:
            # Masked whole, and its password-like query values on their own too (a message
            # may quote just ``token=...``).
            query_forms, query_values = _query_forms(value)
            forms += query_forms
            pieces += query_values
            if local:
                pieces.append(value.split("://", 1)[1].partition("/")[2])
    if "\n" in value:
        # A registered secret's short lines ("true", "}") are too common to mask everywhere;
        # one call's secret (a key being reported) has its lines masked from 4 characters.
        shortest = MIN_LENGTH if local else TOKEN_LENGTH
        pieces += [line.strip() for line in value.splitlines() if len(line.strip()) >= shortest]
    minimum = 1 if local else MIN_LENGTH
    for piece in dict.fromkeys(pieces):
        if len(piece) < minimum:
            continue
        token = len(piece) < TOKEN_LENGTH
        forms += [_Form(text, MASK, token) for text in _escapes(piece)]
    return forms


def _as_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


# -- the registry -------------------------------------------------------------------------------
def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, factored as a trie: one branch per character, so a
    search costs about the same for ten words as for ten thousand."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        end = "" in node
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if end:
            return f"(?:{body})?" if len(branches) == 1 else body + "?"
        return body

    return build(root)


class _Snapshot:
    """What ``mask`` reads: never changed once published (registration publishes a new one)."""

    __slots__ = ("detector", "by_prefix", "lengths", "pending", "size")

    def __init__(self, compiled: list[_Form], pending: tuple[_Form, ...] = ()) -> None:
        by_prefix: dict[str, list[_Form]] = {}
        for form in compiled:
            by_prefix.setdefault(form.text[:_PREFIX], []).append(form)
        self.by_prefix = by_prefix
        self.lengths = tuple(sorted({len(prefix) for prefix in by_prefix}, reverse=True))
        self.detector = re.compile(f"(?=(?:{_trie_pattern(by_prefix)}))") if by_prefix else None
        self.pending = pending
        self.size = len(compiled)


_lock = threading.Lock()
_values: dict[str, None] = {}  # registered secrets, in order (under _lock)
_all_forms: list[_Form] = []  # every form of them, append-only between resets (under _lock)
_forms_seen: set[tuple[str, bool]] = set()  # (text, token) of _all_forms (under _lock)
_exact: set[str] = set()  # registered values, masked where they are the whole text
_snapshot = _Snapshot([])
_generation = 0  # bumped when the registry is reset, so a rebuild in flight is dropped
_rebuilding = False
_REBUILD_AFTER = 8  # pending forms that start a rebuild of the detector


def register_secret(value: Any) -> None:
    """Mask ``value`` as ``***`` wherever plait stores or shows text from now on (run logs,
    state messages, recorded parameters, the console, the CLI).

    Loaded blocks register their secrets themselves; call this for secrets a task obtains at
    run time. The value is also masked in its repr-, JSON- and URL-escaped forms. Values
    under 8 characters are masked only as whole words (``test`` does not touch ``latest``),
    values under 4 only where they are a whole text (such as a parameter), and a URL with a
    password has only its password masked, so its host and database stay readable.

    Args:
        value: A str, bytes or number.
    """
    global _snapshot, _rebuilding
    text = _as_text(value)
    if not text or not text.strip() or text in _values:
        return
    with _lock:
        if text in _values:
            return
        _values[text] = None
        if _url_parts(text) is None:  # a URL with a password keeps its host, even standing alone
            _exact.update((text, text.strip()))
        fresh = []
        for form in _forms(text):
            if (form.text, form.token) not in _forms_seen:
                _forms_seen.add((form.text, form.token))
                _all_forms.append(form)
                fresh.append(form)
        if not fresh:
            return
        snap = _snapshot
        _snapshot = _with_pending(snap, snap.pending + tuple(fresh))
        start = len(_snapshot.pending) >= _REBUILD_AFTER and not _rebuilding
        if start:
            _rebuilding = True
    if start:
        # Compiling the detector takes milliseconds per thousand forms: do it off the caller's
        # thread. Until it is done, the new forms are checked one by one, so nothing is missed.
        try:
            threading.Thread(target=_rebuild, name="plait-mask-rebuild", daemon=True).start()
        except RuntimeError:  # the interpreter is shutting down: the pending forms still work
            with _lock:
                _rebuilding = False


def _with_pending(snap: _Snapshot, pending: tuple[_Form, ...]) -> _Snapshot:
    new = _Snapshot.__new__(_Snapshot)
    new.detector, new.by_prefix, new.lengths, new.size = snap.detector, snap.by_prefix, snap.lengths, snap.size
    new.pending = pending
    return new


def _rebuild() -> None:
    """Compile every form into the detector, publish it, and repeat while forms keep coming."""
    global _snapshot, _rebuilding
    try:
        while True:
            with _lock:
                generation, forms = _generation, list(_all_forms)
            compiled = _Snapshot(forms)
            with _lock:
                if generation != _generation:
                    continue  # the registry was reset meanwhile: start again
                compiled.pending = tuple(_all_forms[len(forms):])
                _snapshot = compiled
                if len(compiled.pending) < _REBUILD_AFTER:
                    _rebuilding = False
                    return
    except BaseException:
        with _lock:
            _rebuilding = False
        raise


def wait_for_rebuild(timeout: float = 30.0) -> None:
    """Wait until the detector holds every registered form (for benchmarks and tests)."""
    import time

    deadline = time.monotonic() + timeout
    while _rebuilding and time.monotonic() < deadline:
        time.sleep(0.001)


def _after_fork() -> None:
    # The rebuilding thread (and a lock it held) did not survive the fork; the child's next
    # registration starts a new rebuild, and until then its pending forms are checked as they are.
    global _lock, _rebuilding
    _lock = threading.Lock()
    _rebuilding = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def registered_secrets() -> list[str]:
    """The registered secret values, in registration order."""
    with _lock:
        return list(_values)


def forget_secrets(*values: str) -> None:
    """Stop masking ``values`` (tests use it to act like a fresh process)."""
    gone = set(values)
    _replace_secrets([v for v in registered_secrets() if v not in gone])


def _replace_secrets(values: Iterable[str]) -> None:
    global _snapshot, _generation
    with _lock:
        _values.clear()
        _all_forms.clear()
        _forms_seen.clear()
        _exact.clear()
        _generation += 1
        _snapshot = _Snapshot([])
    for value in values:
        register_secret(value)


class RegisteredSecrets(MutableSequence[str]):
    """The registry as a list (``plait._logging._SECRETS`` of old): reading lists the values,
    assigning replaces them."""

    def __len__(self) -> int:
        return len(_values)

    def __iter__(self) -> Iterator[str]:
        return iter(registered_secrets())

    def __getitem__(self, index: Any) -> Any:
        return registered_secrets()[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        values = registered_secrets()
        values[index] = value
        _replace_secrets(values)

    def __delitem__(self, index: Any) -> None:
        values = registered_secrets()
        del values[index]
        _replace_secrets(values)

    def insert(self, index: int, value: str) -> None:
        values = registered_secrets()
        values.insert(index, value)
        _replace_secrets(values)


# -- masking -------------------------------------------------------------------------------------
def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _bounded(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is a whole token (no word character glued to it)."""
    if _is_word(text[start]) and start > 0 and _is_word(text[start - 1]):
        return False
    return not (_is_word(text[end - 1]) and end < len(text) and _is_word(text[end]))


def _find_all(text: str, form: _Form, spans: list[tuple[int, int, str]]) -> None:
    size = len(form.text)
    at = text.find(form.text)
    while at >= 0:
        if not form.token or _bounded(text, at, at + size):
            spans.append((at, at + size, form.replacement))
        at = text.find(form.text, at + 1)


def _spans(text: str, snap: _Snapshot, extra: list[_Form]) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []
    if snap.detector is not None:
        by_prefix = snap.by_prefix
        for match in snap.detector.finditer(text):
            at = match.start()
            for length in snap.lengths:
                for form in by_prefix.get(text[at:at + length], ()):
                    end = at + len(form.text)
                    if text.startswith(form.text, at) and (not form.token or _bounded(text, at, end)):
                        spans.append((at, end, form.replacement))
    for form in snap.pending:
        if form.text in text:
            _find_all(text, form, spans)
    for form in extra:
        if form.text in text:
            _find_all(text, form, spans)
    return spans


def _replace(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with the union of ``spans`` replaced (overlapping spans become one ``***``)."""
    spans.sort(key=lambda span: (span[0], -span[1]))
    out: list[str] = []
    position = 0
    start, end, replacement = spans[0]
    for next_start, next_end, next_replacement in spans[1:]:
        if next_start < end:  # overlaps the current span: grow it
            if next_end > end:
                end, replacement = next_end, MASK
            continue
        out += [text[position:start], replacement]
        position = end
        start, end, replacement = next_start, next_end, next_replacement
    out += [text[position:start], replacement, text[end:]]
    return "".join(out)


def _extra_texts(extra: Iterable[Any]) -> Iterator[str]:
    """The secret texts of ``extra``: strings, bytes and numbers as they are; of anything else
    (a block, a ``SecretStr``, a list of them) the pydantic secrets it holds."""
    for value in extra:
        piece = _as_text(value)
        if piece is None:
            yield from secret_values(value)
        elif piece:
            yield piece


def mask(text: str, extra: Iterable[Any] = ()) -> str:
    """``text`` with every registered secret (and each of ``extra``) replaced by ``***``.

    Args:
        text: Any text about to be stored or shown.
        extra: Secrets of this call only (e.g. the block whose error is being reported):
            texts, or objects holding pydantic secrets (a block, a ``SecretStr``), whose
            secret values count. They are masked at any length, short ones as whole tokens.
    """
    if not text:
        return text
    extra_forms: list[_Form] = []
    for piece in _extra_texts(extra):
        # The whole text is the secret: nothing of it is shown (a URL keeps its host, as registered ones do).
        if (piece == text or piece.strip() == text.strip()) and _url_parts(piece) is None:
            return MASK
        extra_forms += _forms(piece, local=True)
    if text in _exact:
        return MASK
    snap = _snapshot
    if not extra_forms:
        detector = snap.detector
        if (detector is None or detector.search(text) is None) and not any(f.text in text for f in snap.pending):
            return text
    spans = _spans(text, snap, extra_forms)
    return _replace(text, spans) if spans else text


def mask_secrets(text: str, extra: Iterable[Any] = ()) -> str:
    """``text`` with every secret plait knows of replaced by ``***``: the public name of the
    one masking function (``plait.mask_secrets``), for collections and user code that build
    messages of their own (an error quoting a driver's reply, say).

    It masks the secrets registered so far (those of every block saved or loaded, values
    given to ``register_secret``), in each form text usually holds them in (as is, repr-,
    JSON- and URL-escaped), with the rules ``register_secret`` describes. ``extra`` adds
    secrets for this call only, without registering them: texts, or objects holding pydantic
    secrets, such as the block whose failure is being reported (``extra=[credentials]``).
    These are masked at any length; those under 8 characters only as whole words.

    Args:
        text: The text about to be shown, logged or raised.
        extra: Secrets of this call only: strings, or blocks, models and ``SecretStr``
            values whose secret fields count.

    Returns:
        ``text`` with each secret replaced by ``***``; a URL with a password keeps its
        scheme, user, host and database (``postgresql://etl:***@db:5432/analytics``).
    """
    return mask(text, extra)


def mask_url(url: str) -> str:
    """``url`` with its password and password-like query values replaced by ``***``; the
    scheme, user, host, port and database stay as written.

    The whole argument is one URL (spaces in its user, password or path are part of it).
    Text that is no URL but holds ``user:password@host`` is hidden whole.
    """
    parts = _url_parts(url, _ONE_URL_WITH_PASSWORD)
    if parts is not None:
        head, _password, tail = parts
        url = f"{head}:{MASK}@{tail}"
    elif "://" not in url and "@" in url:
        return "<unparseable URL, hidden>"
    for name, value in _query_secrets(url):
        url = url.replace(f"{name}={value}", f"{name}={MASK}")
    return url


# -- finding secrets in values ---------------------------------------------------------------------
def _is_secret_object(value: Any) -> bool:
    """A pydantic ``SecretStr``/``SecretBytes``/``Secret[...]`` (duck-typed: no pydantic import)."""
    return not isinstance(value, type) and callable(getattr(value, "get_secret_value", None))


def _model_fields(value: Any) -> Any:
    fields = getattr(type(value), "model_fields", None)
    return fields if isinstance(fields, dict) and not isinstance(value, type) else None


def secret_values(value: Any) -> list[str]:
    """Every secret text ``value`` holds: the contents of pydantic secrets in it, in pydantic
    models (blocks included), dicts, lists, tuples and sets; duplicates dropped."""
    found: list[str] = []
    seen: set[int] = set()

    def leaves(raw: Any, depth: int) -> None:
        text = _as_text(raw)
        if text is not None:
            found.append(text)
        elif depth < 20 and isinstance(raw, dict):
            for item in raw.values():
                leaves(item, depth + 1)
        elif depth < 20 and isinstance(raw, (list, tuple, set, frozenset)):
            for item in raw:
                leaves(item, depth + 1)

    def walk(obj: Any, depth: int) -> None:
        if depth > 20 or id(obj) in seen or isinstance(obj, (str, bytes, int, float, type(None))):
            return
        seen.add(id(obj))
        if _is_secret_object(obj):
            try:
                leaves(obj.get_secret_value(), 0)
            except Exception:  # a secret that cannot be read has nothing to mask
                pass
            return
        fields = _model_fields(obj)
        if fields is not None:
            for name in fields:
                walk(getattr(obj, name, None), depth + 1)
        elif isinstance(obj, dict):
            for item in obj.values():
                walk(item, depth + 1)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for item in obj:
                walk(item, depth + 1)

    walk(value, 0)
    return [text for text in dict.fromkeys(found) if text]
