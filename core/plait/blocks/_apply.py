"""Blocks as code: create or update saved blocks from a TOML or YAML file.

    # blocks.toml
    [[blocks]]
    type = "webhook"
    name = "ops"
    values = { url = "${env:OPS_WEBHOOK_URL}" }

Each entry has a ``type`` (a block type slug), a ``name`` and ``values``. A value may hold
``${env:NAME}`` (the whole value or part of a string; ``$${env:NAME}`` is the literal text)
and ``{"$block": "slug/name"}`` to use another saved block, including one defined earlier in
the same file. ``${var:name}`` is the value of a variable (``plait.variables``): the value
itself (a number, a dict...) when it is the whole string, else put in as text;
``$${var:name}`` is the literal text. Everything is resolved and validated before anything is written, and the
writes happen in one transaction: a file either applies completely or not at all.

With ``PLAIT_API_URL`` set the file is read, resolved and validated here all the same (its
``${env:...}`` are this process's environment), compared with the blocks saved on the server
and the changed blocks sent to it in one request (``plait.blocks._remote.apply_blocks``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from plait.blocks import _remote
from plait.blocks._base import Block
from plait.exceptions import BlockError, BlocksFileError

if TYPE_CHECKING:
    from plait._store.blocks import BlocksTransaction

__all__ = ["ApplyResult", "Edges", "SavedBlocks", "apply_blocks_file", "plan_apply", "read_blocks_file"]

_ENV = re.compile(r"(\$?)\$\{env:([^}]*)\}")
_ENV_OPEN = re.compile(r"(\$?)\$\{env:")
_ENV_START = re.compile(r"\$\{env:[A-Za-z0-9_]*")
# Deeper values are refused: no block needs them, and parsing or walking them would exhaust
# Python's recursion limit (a YAML file can even hold a list that contains itself).
_MAX_DEPTH = 64
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENTRY_KEYS = {"type", "name", "values"}
_SUFFIXES = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}


@dataclass(frozen=True)
class ApplyResult:
    """What applying a blocks file did (or, in a dry run, would do) to one block.

    Attributes:
        name: The block's name.
        slug: Its type's slug.
        action: ``"created"``, ``"updated"`` or ``"unchanged"``.
    """

    name: str
    slug: str
    action: str


@dataclass
class _Entry:
    index: int
    slug: str
    name: str
    values: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.slug}/{self.name}"


@dataclass(frozen=True)
class _BlockRef:
    reference: str
    where: str


# -- reading --------------------------------------------------------------------------------------
def _parse(path: Path) -> tuple[Any, str]:
    """The parsed document and the file's text."""
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise BlocksFileError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; use .toml, .yaml or .yml")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BlocksFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BlocksFileError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if kind == "TOML":
        import tomllib

        try:
            return tomllib.loads(text), text
        except tomllib.TOMLDecodeError as exc:
            raise BlocksFileError(f"{path}: not valid TOML: {exc}") from None
        except RecursionError:
            raise _too_deep_to_read(path, kind) from None
    import yaml

    try:
        return yaml.safe_load(text), text
    except yaml.YAMLError as exc:
        raise BlocksFileError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    except RecursionError:
        raise _too_deep_to_read(path, kind) from None


def _too_deep_to_read(path: Path, kind: str) -> BlocksFileError:
    return BlocksFileError(
        f"{path}: cannot read it: its {kind} is nested too deeply (lists or tables inside each other "
        f"hundreds of levels deep). A block's values need only a few levels; flatten them (at most "
        f"{_MAX_DEPTH})."
    )


def _depth_problem(value: Any, where: str) -> str | None:
    """The path of the first point in ``value`` nested deeper than ``_MAX_DEPTH``, if any."""
    pending: list[tuple[Any, str, int]] = [(value, where, 1)]
    while pending:
        item, here, depth = pending.pop()
        if depth > _MAX_DEPTH:
            return here
        if isinstance(item, dict):
            pending.extend((v, f"{here}.{k}", depth + 1) for k, v in item.items())
        elif isinstance(item, list):
            pending.extend((v, f"{here}[{i}]", depth + 1) for i, v in enumerate(item))
    return None


def _line_of(text: str, snippet: str) -> str:
    index = text.find(snippet)
    return f", line {text.count(chr(10), 0, index) + 1}" if index >= 0 else ""


def _check_env_braces(value: str, path: Path, entry: str, where: str, text: str) -> None:
    """Refuse ``${env:NAME`` without its closing brace (it would be kept as literal text)."""
    for opener in _ENV_OPEN.finditer(value):
        if opener.group(1):  # $${env:...: literal text, braces or not
            continue
        if _ENV.match(value, opener.start()) is None:
            start = _ENV_START.match(value, opener.start())
            snippet = start.group(0) if start else "${env:"
            raise BlocksFileError(
                f"{path}{_line_of(text, snippet)}: block {entry}, field {where!r}: {snippet!r} has no closing "
                f"'}}'; write {snippet}}} (or $${{env:...}} for the literal text)"
            )


def _with_variables(value: str, path: Path, entry: str, where: str, unset: list[str] | None) -> Any:
    """``value`` with ``${var:name}`` replaced by the variable's value (``plait.variables``):
    the value itself when it is the whole string, else as text."""
    if "${var:" not in value:
        return value
    from plait.variables import substitute_references

    absent: list[tuple[str, str]] = []
    try:
        found = substitute_references(value, where, absent)
    except ValueError as exc:
        raise BlocksFileError(f"{path}: block {entry}, {exc}") from None
    if unset is not None:
        unset.extend(f"{name} (block {entry}, field {field!r})" for name, field in absent)
    return found


def _substitute(
    value: Any, path: Path, entry: str, where: str, missing: list[str], text: str = "", unset: list[str] | None = None
) -> Any:
    """``value`` with ``${env:NAME}`` and ``${var:name}`` replaced and ``{"$block": ...}`` marked."""
    if isinstance(value, str):
        _check_env_braces(value, path, entry, where, text)

        def replace(match: re.Match[str]) -> str:
            if match.group(1):  # $${env:NAME}: the literal text ${env:NAME}
                return match.group(0)[1:]
            name = match.group(2).strip()
            if not _ENV_NAME.match(name):
                raise BlocksFileError(
                    f"{path}: block {entry}, field {where!r}: {match.group(0)!r} does not name an environment "
                    "variable (use ${env:NAME} with letters, digits and '_')"
                )
            if name not in os.environ:
                missing.append(f"{name} (block {entry}, field {where!r})")
                return ""
            return os.environ[name]

        return _with_variables(_ENV.sub(replace, value), path, entry, where, unset)
    if isinstance(value, dict):
        if "$block" in value:
            if set(value) != {"$block"} or not isinstance(value["$block"], str):
                raise BlocksFileError(
                    f"{path}: block {entry}, field {where!r}: a block reference is {{\"$block\": \"slug/name\"}} "
                    "and nothing else"
                )
            ref = _substitute(value["$block"], path, entry, where, missing, text, unset)
            if not isinstance(ref, str):
                raise BlocksFileError(f"{path}: block {entry}, field {where!r}: a block reference is a text "
                                      f"'slug/name', but its variable holds {type(ref).__name__}")
            return _BlockRef(ref.strip(), where)
        return {k: _substitute(v, path, entry, f"{where}.{k}", missing, text, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, path, entry, f"{where}[{i}]", missing, text, unset) for i, v in enumerate(value)]
    return value


def read_blocks_file(path: str | Path) -> list[_Entry]:
    """The file's entries with environment variables substituted (block references marked).

    Raises:
        BlocksFileError: The file is unreadable or malformed, or a variable is not set.
    """
    from plait.blocks._references import validate_name

    path = Path(path)
    document, text = _parse(path)
    if not isinstance(document, dict) or not isinstance(document.get("blocks"), list):
        raise BlocksFileError(
            f"{path}: expected a top-level list `blocks` of entries with `type`, `name` and `values` "
            "(TOML: [[blocks]] tables)"
        )
    unknown_top = sorted(set(document) - {"blocks"})
    if unknown_top:
        raise BlocksFileError(
            f"{path}: unknown top-level key(s) {', '.join(map(repr, unknown_top))}; only `blocks` is read"
        )
    entries: list[_Entry] = []
    seen: set[tuple[str, str]] = set()
    missing: list[str] = []
    unset: list[str] = []  # ${var:name} of variables that do not exist
    for i, raw in enumerate(document["blocks"], start=1):
        where = f"#{i}"
        if not isinstance(raw, dict):
            raise BlocksFileError(f"{path}: block {where} is not a table/mapping with `type`, `name` and `values`")
        extra = sorted(set(raw) - _ENTRY_KEYS)
        if extra:
            raise BlocksFileError(
                f"{path}: block {where}: unknown key(s) {', '.join(map(repr, extra))}; an entry has `type`, `name` "
                "and `values`"
            )
        slug, name, values = raw.get("type"), raw.get("name"), raw.get("values", {})
        if not isinstance(slug, str) or not slug.strip():
            raise BlocksFileError(
                f"{path}: block {where}: `type` (a block type slug, see `plait block types`) is missing"
            )
        if not isinstance(name, str) or not name.strip():
            raise BlocksFileError(f"{path}: block {where} ({slug}): `name` is missing")
        slug, name = slug.strip(), name.strip()
        label = f"{where} {slug}/{name!s}"
        try:
            validate_name(name)
        except BlockError as exc:
            raise BlocksFileError(f"{path}: block {label}: {exc}") from None
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise BlocksFileError(f"{path}: block {label}: `values` must be a table/mapping of field values")
        if (slug, name) in seen:
            raise BlocksFileError(f"{path}: block {label} is defined twice in the file")
        seen.add((slug, name))
        for key, value in values.items():
            deep = _depth_problem(value, str(key))
            if deep is not None:
                shown = deep if len(deep) <= 60 else deep[:57] + "..."
                raise BlocksFileError(
                    f"{path}: block {label}, field {shown!r}: nested more than {_MAX_DEPTH} levels deep; "
                    "a block's values need only a few levels: flatten it"
                )
        values = {k: _substitute(v, path, f"{slug}/{name}", k, missing, text, unset) for k, v in values.items()}
        entries.append(_Entry(i, slug, name, values))
    if missing:
        raise BlocksFileError(
            f"{path}: environment variable(s) not set: {'; '.join(missing)}. Set them (or remove the "
            "${env:...} references); nothing was written."
        )
    if unset:
        raise BlocksFileError(
            f"{path}: variable(s) not set: {'; '.join(unset)}. Set them with `plait variable set NAME VALUE` (or "
            "remove the ${var:...} references); nothing was written."
        )
    return entries


# -- the saved blocks a file is compared with ------------------------------------------------------
Edges = list[tuple[str, str]]  # (field path, "slug/name" of a named block held there)


class SavedBlocks(Protocol):
    """The saved blocks a blocks file is resolved against and compared with: the local store
    (``_StoreBlocks``, inside the apply's transaction) or a plait server (``_remote``). Each
    method may raise ``BlockError``, which the apply reports with the file and block;
    a ``BlocksFileError`` it raises is reported as it is."""

    def load(self, reference: str) -> Block:
        """The saved block ``"slug/name"``, built with its class (secrets included)."""
        ...

    def action(self, block: Block, name: str) -> str:
        """``"created"``, ``"updated"`` or ``"unchanged"``: what saving ``block`` as ``name``
        does, secret values compared too."""
        ...

    def edges(self, label: str) -> Edges:
        """The named blocks the saved block ``label`` holds, through its anonymous parts
        (none when there is no such block)."""
        ...


class _StoreBlocks:
    """The saved blocks of the local store, read in the apply's transaction."""

    def __init__(self, tx: BlocksTransaction) -> None:
        self.tx = tx

    def load(self, reference: str) -> Block:
        from plait.blocks._load import _find, _instantiate

        return _instantiate(self.tx, _find(self.tx, Block, reference), None)

    def action(self, block: Block, name: str) -> str:
        from plait.blocks._encoding import DamagedDocument, stored_canonical_values
        from plait.blocks._values import canonical_values

        doc = self.tx.get_by_name(block.block_type_slug, name)
        if doc is None:
            return "created"
        if doc.schema_checksum != type(block).schema_checksum():
            return "updated"
        try:
            stored = stored_canonical_values(self.tx, doc, type(block))
        except DamagedDocument:
            return "updated"  # the file's values replace what cannot be read (unlike a wrong key)
        return "unchanged" if stored == canonical_values(block) else "updated"

    def edges(self, label: str) -> Edges:
        return _stored_edges(self.tx, label)


# -- building -------------------------------------------------------------------------------------
def _build(path: Path, entries: list[_Entry], saved: SavedBlocks) -> list[Block]:
    from plait.blocks._references import split_reference
    from plait.blocks._schema import validation_message
    from plait.blocks._types import get_block_class
    from plait.blocks._values import _string_leaves
    from plait.blocks._values import _top_level_secret_fields as _secret_names

    defined: dict[tuple[str, str], Block] = {}
    later = {(e.slug, e.name) for e in entries}
    built: list[Block] = []
    for entry in entries:
        prefix = f"{path}: block #{entry.index} {entry.label!r}"
        try:
            cls = get_block_class(entry.slug)
        except BlockError as exc:
            raise BlocksFileError(f"{prefix}: {exc}") from None

        def resolve(value: Any, entry: _Entry = entry, prefix: str = prefix) -> Any:
            if isinstance(value, _BlockRef):
                where = f"{prefix}, field {value.where!r}"
                try:
                    slug, name = split_reference(value.reference)
                except BlockError as exc:
                    raise BlocksFileError(f"{where}: {exc}") from None
                if slug is None:
                    raise BlocksFileError(f"{where}: write the reference as 'slug/name', e.g. 'webhook/{name}'")
                if (slug, name) == (entry.slug, entry.name):
                    raise BlocksFileError(f"{where}: a block cannot contain itself; point the field at another block")
                if (slug, name) in defined:
                    return defined[(slug, name)]
                if (slug, name) in later:
                    raise BlocksFileError(
                        f"{where}: block {value.reference!r} is defined later in the file; move it above this one"
                    )
                try:
                    return saved.load(f"{slug}/{name}")
                except BlocksFileError:
                    raise
                except BlockError as exc:
                    raise BlocksFileError(f"{where}: {exc}") from None
            if isinstance(value, dict):
                return {k: resolve(v) for k, v in value.items()}
            if isinstance(value, list):
                return [resolve(v) for v in value]
            return value

        values = resolve(entry.values)
        try:
            block = cls.model_validate(values)
        except ValidationError as exc:
            secrets = [
                leaf for name in _secret_names(cls) if name in values for leaf in _string_leaves(values[name])
            ]
            raise BlocksFileError(validation_message(exc, f"{prefix} is not a valid {cls.__name__}", secrets)) from None
        block._document_name = entry.name  # so later entries reference it by name
        defined[(entry.slug, entry.name)] = block
        built.append(block)
    return built


# -- cycles ---------------------------------------------------------------------------------------

def _built_edges(block: Block) -> Edges:
    """The named blocks ``block`` holds, looking inside the unnamed nested blocks it holds
    (those are saved as anonymous parts of it)."""
    from plait.blocks._references import _is_anonymous
    from plait.blocks._save import _nested_blocks

    edges: Edges = []

    def walk(current: Block, prefix: str) -> None:
        for fname in type(current).nested_block_fields():
            for child in _nested_blocks(getattr(current, fname, None)):
                name = child._document_name
                if name and not _is_anonymous(name):
                    edges.append((prefix + fname, f"{child.block_type_slug}/{name}"))
                else:
                    walk(child, f"{prefix}{fname}.")

    walk(block, "")
    return edges


def _stored_edges(tx: BlocksTransaction, label: str) -> Edges:
    """The named blocks the saved block ``label`` holds, through its anonymous parts."""
    from plait.blocks._references import _is_anonymous

    slug, _, name = label.partition("/")
    doc = tx.get_by_name(slug, name)
    edges: Edges = []
    seen: set[str] = set()

    def walk(doc_id: str, prefix: str) -> None:
        if doc_id in seen:  # a damaged store: do not go round forever
            return
        seen.add(doc_id)
        for ref in tx.references_of(doc_id):
            child = tx.get_by_id(ref.child_id)
            if child is None:
                continue
            if _is_anonymous(child.name):
                walk(child.id, f"{prefix}{ref.field_name}.")
            else:
                edges.append((prefix + ref.field_name, f"{child.slug}/{child.name}"))

    if doc is not None:
        walk(doc.id, "")
    return edges


def _check_cycles(
    path: Path, entries: list[_Entry], blocks: list[Block], results: list[ApplyResult], saved: SavedBlocks
) -> None:
    """Refuse a file whose blocks, together with the saved ones, would contain themselves."""
    built = {entry.label: _built_edges(block) for entry, block in zip(entries, blocks, strict=True)}
    stored: dict[str, Edges] = {}

    def edges(label: str) -> Edges:
        if label in built:
            return built[label]
        if label not in stored:
            try:
                stored[label] = saved.edges(label)
            except BlocksFileError:
                raise
            except BlockError as exc:
                raise BlocksFileError(f"{path}: block {label}: {exc}") from None
        return stored[label]

    for entry, result in zip(entries, results, strict=True):
        if result.action == "unchanged":
            continue  # it changes nothing, so it closes no loop
        start = entry.label
        pending: list[tuple[str, list[tuple[str, str]]]] = [(start, [])]
        seen = {start}
        while pending:
            node, steps = pending.pop()
            for field_path, target in edges(node):
                here = [*steps, (node, field_path)]
                if target == start:
                    loop = " → ".join(f"{label} field {f!r}" for label, f in here)
                    raise BlocksFileError(
                        f"{path}: block #{entry.index} {start!r}, field {here[0][1]!r}: applying the file would "
                        f"make a cycle: {loop} → {start}. A block cannot contain itself, directly or through "
                        "other blocks; point the field at another block."
                    )
                if target not in seen:
                    seen.add(target)
                    pending.append((target, here))


def _action(saved: SavedBlocks, block: Block, name: str, path: Path) -> str:
    try:
        return saved.action(block, name)
    except BlocksFileError:
        raise
    except BlockError as exc:
        raise BlocksFileError(f"{path}: block {block.block_type_slug}/{name!s}: {exc}") from None


def plan_apply(path: Path, entries: list[_Entry], saved: SavedBlocks) -> tuple[list[Block], list[ApplyResult]]:
    """The blocks a file's entries describe, built and validated, and what applying each would do.

    Args:
        path: The file (named in errors).
        entries: Its entries, as ``read_blocks_file`` gives them.
        saved: The saved blocks references resolve to and the blocks are compared with.

    Returns:
        The blocks and their ``ApplyResult``, both in file order.

    Raises:
        BlocksFileError: A block that is not valid, a reference to no saved block, a cycle
            (file, block and field named).
    """
    from plait.blocks._values import register_block_secrets

    blocks = _build(path, entries, saved)
    for block in blocks:
        register_block_secrets(block)
    results = [
        ApplyResult(entry.name, entry.slug, _action(saved, block, entry.name, path))
        for entry, block in zip(entries, blocks, strict=True)
    ]
    _check_cycles(path, entries, blocks, results, saved)
    return blocks, results


def apply_blocks_file(path: str | Path, dry_run: bool = False) -> list[ApplyResult]:
    """Create or update every block a TOML/YAML blocks file describes, in one transaction
    (through the plait server when ``PLAIT_API_URL`` is set: see ``_remote.apply_blocks``).

    Args:
        path: The file (``.toml``, ``.yaml`` or ``.yml``).
        dry_run: Resolve, validate and compare, but write nothing.

    Returns:
        One ``ApplyResult`` per block, in file order.

    Raises:
        BlocksFileError: Anything wrong with the file, a variable not set, a block that is not
            valid (file, block and field named) — and then nothing was written.
    """
    from plait.blocks._db import _now, _read, _run_write
    from plait.blocks._save import _mark, _Saved, save_in

    path = Path(path)
    entries = read_blocks_file(path)
    if _remote.active():
        return _remote.apply_blocks(path, entries, dry_run)

    def work(tx: BlocksTransaction, write: bool) -> tuple[list[ApplyResult], _Saved]:
        blocks, results = plan_apply(path, entries, _StoreBlocks(tx))
        saved = _Saved()
        if write:
            now = _now()
            for entry, block, result in zip(entries, blocks, results, strict=True):
                if result.action != "unchanged":
                    try:
                        save_in(tx, block, entry.name, True, now, saved)
                    except BlockError as exc:  # e.g. a cycle a concurrent writer closed
                        raise BlocksFileError(f"{path}: block #{entry.index} {entry.label!r}: {exc}") from None
        return results, saved

    if dry_run:
        results, _ = _read("read blocks from", lambda tx: work(tx, False))
        return results
    results, saved = _run_write("save blocks in", lambda tx: work(tx, True))
    _mark(saved)
    return results
