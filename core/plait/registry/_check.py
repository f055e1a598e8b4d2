"""``plait registry check``: rebuild registry.json in memory and compare it with the committed file.

The comparison is of JSON values, reported as JSON paths
(``collections.plait-aws.version: registry.json has "0.1.0", source has "0.2.0"``); a file
whose values match but whose text does not (edited by hand, reformatted) also fails.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plait.registry._build import build_document, find_repo_root, render
from plait.registry._model import RegistryError, json_path

__all__ = ["CheckResult", "check_registry", "diff_documents", "FIX"]

FIX = "run `plait registry build` and commit registry.json"
MAX_DIFFERENCES = 20


@dataclass
class CheckResult:
    """The outcome of a check: ``ok``, the file checked and what differs (at most 20 lines)."""

    ok: bool
    path: str
    differences: list[str] = field(default_factory=list)
    total: int = 0
    collections: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        if self.ok:
            n = len(self.collections)
            return f"{self.path} is up to date ({n} collection{'' if n == 1 else 's'})"
        what = f"{self.total} difference{'' if self.total == 1 else 's'}" if self.total else "formatting differs"
        return f"{self.path} is out of date ({what}); {FIX}"

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "path": self.path, "differences": self.differences,
                "total": self.total, "collections": self.collections, "message": self.message}


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object with {len(value)} key{'' if len(value) == 1 else 's'}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return _short(value)


def diff_documents(committed: Any, source: Any, loc: tuple[Any, ...] = ()) -> list[str]:
    """Every difference between two JSON values, as ``path: ...`` lines, in document order."""
    path = json_path(loc)
    if isinstance(committed, dict) and isinstance(source, dict):
        lines: list[str] = []
        for key in sorted(set(committed) | set(source)):
            if key not in source:
                lines.append(f"{json_path((*loc, key))}: in registry.json but not in source")
            elif key not in committed:
                lines.append(
                    f"{json_path((*loc, key))}: missing from registry.json (source has {_describe(source[key])})"
                )
            else:
                lines += diff_documents(committed[key], source[key], (*loc, key))
        return lines
    if isinstance(committed, list) and isinstance(source, list):
        lines = []
        if len(committed) != len(source):
            lines.append(f"{path}: registry.json has {len(committed)} items, source has {len(source)}")
        # the length difference is reported above; compare the items both lists have
        for i, (old, new) in enumerate(zip(committed, source, strict=False)):
            lines += diff_documents(old, new, (*loc, i))
        return lines
    if committed == source and type(committed) is type(source):
        return []
    return [f"{path}: registry.json has {_short(committed)}, source has {_short(source)}"]


def check_registry(root: str | os.PathLike[str] | None = None) -> CheckResult:
    """Rebuild the registry of the checkout at ``root`` and compare with its registry.json.

    Raises:
        RegistryError: registry.json is missing or not JSON, or the build itself fails.
    """
    root_path = Path(root).resolve() if root is not None else find_repo_root()
    target = root_path / "registry.json"
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"{target} does not exist; {FIX}") from None
    try:
        committed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(
            f"{target}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; {FIX}"
        ) from None
    source = build_document(root_path, registry_dir=root_path)
    names = sorted(source["collections"])
    differences = diff_documents(committed, source)
    if not differences and text == render(source):
        return CheckResult(True, str(target), collections=names)
    return CheckResult(False, str(target), differences[:MAX_DIFFERENCES], len(differences), names)
