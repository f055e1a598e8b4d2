"""Blocks as code: create or update saved blocks from a TOML or YAML file.

    # blocks.toml
    [[blocks]]
    type = "webhook"
    name = "ops"
    values = { url = "${env:OPS_WEBHOOK_URL}" }

Each entry has a ``type`` (a block type slug), a ``name`` and ``values``. A value may hold
``${env:NAME}`` (the whole value or part of a string; ``$${env:NAME}`` is the literal text)
and ``{"$block": "slug/name"}`` to use another saved block, including one defined earlier in
the same file. Everything is resolved and validated before anything is written, and the
writes happen in one transaction: a file either applies completely or not at all.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from plait.blocks._base import Block
from plait.exceptions import BlockError, BlocksFileError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = ["ApplyResult", "apply_blocks_file", "read_blocks_file"]

_ENV = re.compile(r"(\$?)\$\{env:([^}]*)\}")
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
def _parse(path: Path) -> Any:
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
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise BlocksFileError(f"{path}: not valid TOML: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BlocksFileError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None


def _substitute(value: Any, path: Path, entry: str, where: str, missing: list[str]) -> Any:
    """``value`` with ``${env:NAME}`` replaced and ``{"$block": ...}`` marked."""
    if isinstance(value, str):

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

        return _ENV.sub(replace, value)
    if isinstance(value, dict):
        if "$block" in value:
            if set(value) != {"$block"} or not isinstance(value["$block"], str):
                raise BlocksFileError(
                    f"{path}: block {entry}, field {where!r}: a block reference is {{\"$block\": \"slug/name\"}} "
                    "and nothing else"
                )
            ref = _substitute(value["$block"], path, entry, where, missing)
            return _BlockRef(ref.strip(), where)
        return {k: _substitute(v, path, entry, f"{where}.{k}", missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, path, entry, f"{where}[{i}]", missing) for i, v in enumerate(value)]
    return value


def read_blocks_file(path: str | Path) -> list[_Entry]:
    """The file's entries with environment variables substituted (block references marked).

    Raises:
        BlocksFileError: The file is unreadable or malformed, or a variable is not set.
    """
    from plait.blocks._references import validate_name

    path = Path(path)
    document = _parse(path)
    if not isinstance(document, dict) or not isinstance(document.get("blocks"), list):
        raise BlocksFileError(
            f"{path}: expected a top-level list `blocks` of entries with `type`, `name` and `values` "
            "(TOML: [[blocks]] tables)"
        )
    unknown_top = sorted(set(document) - {"blocks"})
    if unknown_top:
        raise BlocksFileError(f"{path}: unknown top-level key(s) {', '.join(map(repr, unknown_top))}; only `blocks` is read")
    entries: list[_Entry] = []
    seen: set[tuple[str, str]] = set()
    missing: list[str] = []
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
            raise BlocksFileError(f"{path}: block {where}: `type` (a block type slug, see `plait block types`) is missing")
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
        values = {k: _substitute(v, path, f"{slug}/{name}", k, missing) for k, v in values.items()}
        entries.append(_Entry(i, slug, name, values))
    if missing:
        raise BlocksFileError(
            f"{path}: environment variable(s) not set: {'; '.join(missing)}. Set them (or remove the "
            "${env:...} references); nothing was written."
        )
    return entries


# -- building -------------------------------------------------------------------------------------
def _build(path: Path, entries: list[_Entry], conn: Connection) -> list[Block]:
    from plait.blocks._load import _find, _instantiate
    from plait.blocks._references import split_reference
    from plait.blocks._schema import validation_message
    from plait.blocks._types import get_block_class
    from plait.blocks._values import _string_leaves, _top_level_secret_fields as _secret_names

    defined: dict[tuple[str, str], Block] = {}
    later = {(e.slug, e.name) for e in entries}
    built: list[Block] = []
    for entry in entries:
        prefix = f"{path}: block #{entry.index} {entry.label!r}"
        try:
            cls = get_block_class(entry.slug)
        except BlockError as exc:
            raise BlocksFileError(f"{prefix}: {exc}") from None

        def resolve(value: Any) -> Any:
            if isinstance(value, _BlockRef):
                where = f"{prefix}, field {value.where!r}"
                try:
                    slug, name = split_reference(value.reference)
                except BlockError as exc:
                    raise BlocksFileError(f"{where}: {exc}") from None
                if slug is None:
                    raise BlocksFileError(f"{where}: write the reference as 'slug/name', e.g. 'webhook/{name}'")
                if (slug, name) in defined:
                    return defined[(slug, name)]
                if (slug, name) in later:
                    raise BlocksFileError(
                        f"{where}: block {value.reference!r} is defined later in the file; move it above this one"
                    )
                try:
                    return _instantiate(conn, _find(conn, Block, value.reference), None)
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


def _action(conn: Connection, block: Block, name: str, path: Path) -> str:
    from plait.blocks._db import _doc_by_name
    from plait.blocks._encoding import stored_canonical_values
    from plait.blocks._values import canonical_values

    row = _doc_by_name(conn, block.block_type_slug, name)
    if row is None:
        return "created"
    if row.schema_checksum != type(block).schema_checksum():
        return "updated"
    try:
        stored = stored_canonical_values(conn, row, type(block))
    except BlockError as exc:
        raise BlocksFileError(f"{path}: block {block.block_type_slug}/{name!s}: {exc}") from None
    return "unchanged" if stored == canonical_values(block) else "updated"


def apply_blocks_file(path: str | Path, dry_run: bool = False) -> list[ApplyResult]:
    """Create or update every block a TOML/YAML blocks file describes, in one transaction.

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
    from plait.blocks._values import register_block_secrets

    path = Path(path)
    entries = read_blocks_file(path)

    def work(conn: Connection, write: bool) -> tuple[list[ApplyResult], _Saved, list[Block]]:
        blocks = _build(path, entries, conn)
        for block in blocks:
            register_block_secrets(block)
        results = [
            ApplyResult(entry.name, entry.slug, _action(conn, block, entry.name, path))
            for entry, block in zip(entries, blocks)
        ]
        saved = _Saved()
        if write:
            now = _now()
            for entry, block, result in zip(entries, blocks, results):
                if result.action != "unchanged":
                    save_in(conn, block, entry.name, True, now, saved)
        return results, saved, blocks

    if dry_run:
        results, _, _ = _read("read blocks from", lambda conn: work(conn, False))
        return results
    results, saved, _ = _run_write("save blocks in", lambda conn: work(conn, True))
    _mark(saved)
    return results
