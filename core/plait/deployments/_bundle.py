"""Code bundles: a project directory zipped into a storage block, for workers elsewhere.

``upload_bundle`` zips the project (without ``.git``, ``.venv``, ``__pycache__``,
``*.pyc``, ``.plait``, plait's home when it lies inside, and what ``.plaitignore``
lists) and writes it with the storage block's ``write_path``. The zip is byte-for-byte
reproducible (sorted entries, fixed timestamps), and its key holds the SHA-256 of its
bytes: an unchanged project gives the same key, so deploying it again reports
"unchanged". ``fetch_bundle`` (the worker's side) reads it back, checks that hash and
unpacks it safely (no entry may land outside the target directory).

``.plaitignore`` takes one pattern a line (``#`` starts a comment): a pattern without
``/`` matches a file or directory name at any depth (``*.csv``, ``data``); one with ``/``
matches the path from the project's root (``docs/build``); a trailing ``/`` matches
directories only.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from plait.exceptions import PlaitError

__all__ = ["IGNORE_FILE", "ALWAYS_SKIPPED", "bundle_bytes", "upload_bundle", "fetch_bundle", "BundleError"]

IGNORE_FILE = ".plaitignore"
ALWAYS_SKIPPED = (".git/", ".venv/", "__pycache__/", "*.pyc", ".plait/")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_HASH_CHARS = 16


class BundleError(PlaitError, ValueError):
    """A bundle that cannot be made, found or unpacked (the message says why)."""


def _patterns(root: Path) -> list[str]:
    patterns = list(ALWAYS_SKIPPED)
    ignore = root / IGNORE_FILE
    if ignore.is_file():
        for line in ignore.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line)
    return patterns


def _ignored(relative: str, is_dir: bool, patterns: list[str]) -> bool:
    name = relative.rpartition("/")[2]
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        body = pattern.rstrip("/")
        if not body or (dir_only and not is_dir):
            continue
        if "/" in body:
            if fnmatch.fnmatchcase(relative, body.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, body):
            return True
    return False


def _home_inside(root: Path) -> str | None:
    """plait's home, relative to ``root`` when it lies inside: it holds the encryption key and
    the local store, which never travel with the code."""
    from plait.settings import get_settings

    home = Path(get_settings().home).expanduser().resolve()
    return home.relative_to(root).as_posix() if home != root and home.is_relative_to(root) else None


def _files(root: Path) -> list[tuple[str, Path]]:
    """``(relative posix path, file)`` of every file to bundle, sorted."""
    patterns = _patterns(root)
    home = _home_inside(root)
    if home is not None:
        patterns.append("/" + home + "/")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        base = here.relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        dirnames[:] = sorted(d for d in dirnames if not _ignored(prefix + d, True, patterns))
        for name in sorted(filenames):
            relative = prefix + name
            full = here / name
            if full.is_file() and not _ignored(relative, False, patterns):
                found.append((relative, full))
    return sorted(found)


def bundle_bytes(root: str | Path) -> tuple[bytes, list[str]]:
    """The project at ``root`` as a reproducible zip, and the paths it holds.

    Raises:
        BundleError: ``root`` is not a directory.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise BundleError(f"project directory {root} does not exist or is not a directory")
    buffer = io.BytesIO()
    names = []
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative, full in _files(root):
            info = zipfile.ZipInfo(relative, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if os.access(full, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, full.read_bytes())
            names.append(relative)
    return buffer.getvalue(), names


def _relative_entrypoint(entrypoint: str, root: Path) -> str:
    where, _, attribute = entrypoint.rpartition(":")
    if not (where.endswith(".py") or "/" in where or os.sep in where):
        return entrypoint  # a module: importable from the bundle's root
    file = Path(where).expanduser()
    file = (file if file.is_absolute() else root / file).resolve()
    if not file.is_relative_to(root):
        raise BundleError(f"the entrypoint's file {file} is outside the project {root}; bundle the "
                          "directory that holds it (project_dir=...)")
    if not file.is_file():
        raise BundleError(f"the entrypoint's file {file} does not exist")
    return f"{file.relative_to(root).as_posix()}:{attribute}"


def _storage(reference: str) -> Any:
    from plait.blocks import Block

    block = Block.load(reference)
    if not callable(getattr(block, "write_path", None)) or not callable(getattr(block, "read_path", None)):
        raise BundleError(f"block {reference} cannot store files (it has no read_path/write_path); "
                          "use a storage block such as local-file-system or s3-bucket")
    return block


def upload_bundle(storage_block: str, root: str | Path, entrypoint: str, *, prefix: str) -> tuple[str, str]:
    """Zip ``root`` and write it to ``storage_block``.

    Args:
        storage_block: ``"slug/name"`` of a saved storage block.
        root: The project directory.
        entrypoint: The deployment's entrypoint (a file inside ``root``, or a module).
        prefix: Where in the block bundles of this deployment go (``flow/deployment``).

    Returns:
        ``(key, entrypoint)``: the bundle's key, and the entrypoint relative to its root.

    Raises:
        BundleError: ``root`` is not a directory, or the entrypoint is outside it.
        BlockNotFound: No such saved block.
    """
    root = Path(root).expanduser().resolve()
    relative = _relative_entrypoint(entrypoint, root)
    data, _names = bundle_bytes(root)
    digest = hashlib.sha256(data).hexdigest()[:_HASH_CHARS]
    key = f"plait-bundles/{prefix}/{digest}.zip"
    # written even when the key exists: the same bytes again, and a damaged copy is replaced
    _storage(storage_block).write_path(key, data)
    return key, relative


def fetch_bundle(storage_block: str, bundle_key: str, destination: str | Path) -> Path:
    """Download a bundle and unpack it into ``destination`` (created); returns it.

    Raises:
        BundleError: The bundle is missing, damaged (its hash does not match its key) or
            holds a path that would leave ``destination``.
        BlockNotFound: No such saved block.
    """
    block = _storage(storage_block)
    try:
        data = block.read_path(bundle_key)
    except FileNotFoundError:
        raise BundleError(f"bundle {bundle_key} is not in block {storage_block}; deploy again to upload it") from None
    expected = PurePosixPath(bundle_key).stem
    if len(expected) == _HASH_CHARS and hashlib.sha256(data).hexdigest()[:_HASH_CHARS] != expected:
        raise BundleError(f"bundle {bundle_key} in block {storage_block} does not match its hash; deploy again")
    target = Path(destination).expanduser().resolve()
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            out = (target / info.filename).resolve()
            if not out.is_relative_to(target) or out == target:
                raise BundleError(f"bundle {bundle_key} holds {info.filename!r}, which leaves the directory")
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(archive.read(info))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                out.chmod(mode)
    return target
