"""The compatibility matrix: which plait versions each collection version's tests passed on.

CI runs a collection's tests, then ``plait registry record-pass NAME --plait-version V``
adds V to ``tested_with.json`` at the root of the checkout (committed, like registry.json):

    {"plait-aws": {"0.1.0": ["0.1.0", "0.2.0"]}}

It is keyed by the collection's version, so a new version of a collection starts untested.
``plait registry build`` copies the list of the current version into the entry's
``tested_with``, which keeps the build a pure function of the checkout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from plait.registry._model import RegistryError

__all__ = ["TESTED_WITH_FILE", "read_tested_with", "record_pass"]

TESTED_WITH_FILE = "tested_with.json"


def _version_key(text: str) -> tuple[int, Any]:
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)


def read_tested_with(root: Path) -> dict[str, dict[str, list[str]]]:
    """``{collection: {collection version: [plait versions]}}``; empty when there is no file."""
    path = root / TESTED_WITH_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(f"cannot read {path}: {exc}; fix it or rerun `plait registry record-pass`") from None
    ok = isinstance(data, dict) and all(
        isinstance(versions, dict)
        and all(isinstance(passed, list) and all(isinstance(v, str) for v in passed) for passed in versions.values())
        for versions in data.values()
    )
    if not ok:
        raise RegistryError(f'{path}: expected {{"collection": {{"version": ["plait version", ...]}}}}')
    return data  # type: ignore[no-any-return]


def record_pass(root: Path, name: str, plait_version: str, collection_version: str) -> dict[str, Any]:
    """Record that ``name`` ``collection_version``'s tests passed on plait ``plait_version``.

    Returns:
        ``{path, name, version, plait_version, tested_with, changed}``.
    """
    from packaging.version import InvalidVersion, Version

    try:
        Version(plait_version)
    except InvalidVersion:
        raise RegistryError(f"--plait-version {plait_version!r} is not a version (e.g. 0.1.0)") from None
    data = read_tested_with(root)
    passed = data.setdefault(name, {}).setdefault(collection_version, [])
    changed = plait_version not in passed
    if changed:
        passed.append(plait_version)
        passed.sort(key=_version_key)
        path = root / TESTED_WITH_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        ordered = {n: {v: data[n][v] for v in sorted(data[n], key=_version_key)} for n in sorted(data)}
        tmp.write_text(json.dumps(ordered, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return {"path": str(root / TESTED_WITH_FILE), "name": name, "version": collection_version,
            "plait_version": plait_version, "tested_with": list(passed), "changed": changed}
