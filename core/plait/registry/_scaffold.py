"""``plait collection new plait-NAME``: a new collection that passes its own tests as generated.

The files follow docs/collections/writing-a-collection.md: a pyproject with its own version,
a plait range admitting the running plait and the ``plait.plugins`` entry point (plus the
declarations of what the plugin provides), a package with one credentials block, one task
and the plugin module, README.md, CHANGELOG.md, a docs page and a test module running
``plait.testing.CollectionSuite``.
"""

from __future__ import annotations

import datetime as dt
import keyword
import re
from pathlib import Path
from typing import Any

from plait.registry._model import RegistryError

__all__ = ["scaffold_collection", "default_plait_range"]

_NAME = re.compile(r"^plait-[a-z][a-z0-9]*(-[a-z0-9]+)*$")

_PYPROJECT = '''\
[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = "{dist}"
version = "0.1.0"
description = "{title} for plait flows: credentials and a prebuilt task."
readme = "README.md"
requires-python = ">=3.11"
license = "Apache-2.0"
dependencies = [
    "plait{plait_range}",
]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points."plait.plugins"]
{pkg} = "{pkg}.plugin"

# What the plugin provides: plait imports {pkg}.plugin only when one is needed.
[project.entry-points."plait.block_types"]
{slug} = "{pkg}.plugin"

[project.entry-points."plait.hooks"]
plait_register_tasks = "{pkg}.plugin"

[tool.hatch.build.targets.wheel]
packages = ["{pkg}"]
'''

_INIT = '''\
"""{dist}: {title} for plait flows."""

from {pkg}.credentials import {cls}
from {pkg}.tasks import {task}

__all__ = ["{cls}", "{task}"]
'''

_CREDENTIALS = '''\
"""The credentials block of {dist}."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from plait.blocks import CredentialsBlock


class {cls}(CredentialsBlock):
    """Credentials for the {title} API.

    Save one per account and load it by name in flows.
    """

    api_key: SecretStr = Field(description="The API key (kept encrypted, shown masked).")
    base_url: str = Field("https://api.example.com", description="The API's base URL.")

    code_example: ClassVar[str] = """
from {pkg} import {cls}

{cls}(api_key="my-key").save("{short}")
credentials = {cls}.load("{short}")
"""

    def test_connection(self) -> None:
        """Check the credentials (replace with a cheap authenticated call to the API)."""
        if not self.api_key.get_secret_value():
            raise ValueError("{cls}.api_key is empty: set the API key")
'''

_TASKS = '''\
"""The tasks of {dist}."""

from __future__ import annotations

from plait import task

from {pkg}.credentials import {cls}


@task
def {task}(message: str, credentials: {cls}) -> str:
    """Say something to the {title} API (replace with a real call).

    Example:
        {task}("hello", {cls}(api_key="my-key"))
    """
    return f"{{message}} from {{credentials.base_url}}"
'''

_PLUGIN = '''\
"""Registers {dist}'s block and task with plait (entry point {pkg} in plait.plugins)."""

from __future__ import annotations

from typing import Any

from plait.hookspecs import hookimpl
from {pkg} import {cls}, {task}

BLOCK_CLASSES: tuple[type, ...] = ({cls},)


@hookimpl
def plait_register_blocks() -> list[type]:
    return list(BLOCK_CLASSES)


@hookimpl
def plait_register_tasks() -> list[Any]:
    return [{task}]
'''

_TEST = '''\
"""{dist} keeps plait's collection conventions (plait.testing.CollectionSuite)."""

import {pkg}
from plait.testing import CollectionSuite
from {pkg} import {cls}, {task}


class Test{camel}Collection(CollectionSuite):
    package = {pkg}
    examples = {{{cls}: [{cls}(api_key="example-key-0001", base_url="https://api.example.com")]}}
    docs = ["README.md", "{docs_rel}"]
    tasks = ["{task_name}"]
    requires_plait = "{plait_range}"


def test_{task}_uses_the_credentials() -> None:
    credentials = {cls}(api_key="k", base_url="https://example.test")
    assert {task}.fn("hi", credentials) == "hi from https://example.test"
'''

_README = '''\
# {dist}

{title} for plait flows: `{cls}` (block type `{slug}`) and the `{task}` task.

```console
$ plait collection install {dist}
```

```python
from plait import flow
from {pkg} import {cls}, {task}


@flow
def say_hello() -> str:
    return {task}("hello", {cls}(api_key="my-key"))


print(say_hello())  # hello from https://api.example.com
```
'''

_CHANGELOG = '''\
# Changelog

## 0.1.0 - {today}

- {cls} block; {task} task.
'''

_DOCS = '''\
# {dist}

{title} for plait flows. Install it with `plait collection install {dist}`.

## Blocks

`{cls}` (`{slug}`): `api_key` (secret), `base_url`.

## Tasks

`{task}(message: str, credentials: {cls}) -> str`

```python
from {pkg} import {cls}, {task}

print({task}.fn("hi", {cls}(api_key="my-key")))  # hi from https://api.example.com
```
'''


def default_plait_range(version: str) -> str:
    """``>=X.Y,<X.(Y+1)`` for plait 0.x (the next minor may break), ``>=X.Y,<X+1`` after."""
    from packaging.version import Version

    v = Version(version)
    if v.major == 0:
        return f">=0.{v.minor},<0.{v.minor + 1}"
    return f">={v.major}.{v.minor},<{v.major + 1}"


def _checkout_of(directory: Path) -> Path | None:
    from plait.registry._build import _is_plait_root

    return directory.parent if directory.name == "collections" and _is_plait_root(directory.parent) else None


def scaffold_collection(
    name: str, directory: str | Path | None = None, *, plait_range: str | None = None
) -> dict[str, Any]:
    """Write a new collection ``name`` (``plait-weather``) into ``directory``/``name``.

    ``directory`` defaults to the checkout's collections/ (else the current directory).
    The docs page goes to the checkout's docs/collections/ when ``directory`` is a
    checkout's collections/, else into the collection's own docs/.

    Returns:
        ``{path, docs, files: [relative paths], package, plait_range}``.

    Raises:
        RegistryError: A bad name, or the target exists.
    """
    from plait.registry._install import plait_version

    if not _NAME.match(name):
        raise RegistryError(
            f"{name!r} is not a collection name: use plait- and lowercase words joined by -, e.g. plait-weather"
        )
    short = name.removeprefix("plait-")
    pkg = "plait_" + short.replace("-", "_")
    if keyword.iskeyword(pkg):  # pragma: no cover - plait_ prefix makes this impossible today
        raise RegistryError(f"{pkg} is a Python keyword")
    if directory is None:
        from plait.registry._build import find_repo_root

        try:
            base = find_repo_root() / "collections"
        except RegistryError:
            base = Path.cwd()
    else:
        base = Path(directory).expanduser()
    base = base.resolve()
    target = base / name
    if target.exists():
        raise RegistryError(f"{target} already exists; pick another name or --dir")
    checkout = _checkout_of(base)
    docs = (checkout / "docs" / "collections" / f"{name}.md") if checkout else (target / "docs" / f"{name}.md")
    camel = "".join(part.title() for part in short.split("-"))
    values = {
        "dist": name, "pkg": pkg, "short": short, "camel": camel,
        "title": " ".join(part.title() for part in short.split("-")),
        "cls": f"{camel}Credentials", "slug": f"{short}-credentials",
        "task": f"{short.replace('-', '_')}_hello", "task_name": f"{short.replace('-', '_')}_hello",
        "plait_range": plait_range or default_plait_range(plait_version()),
        "docs_rel": Path("..", "..", "docs", "collections", f"{name}.md").as_posix() if checkout else f"docs/{name}.md",
        "today": dt.date.today().isoformat(),
    }
    if docs.exists():
        raise RegistryError(f"{docs} already exists; remove it or pick another name")
    files = {
        "pyproject.toml": _PYPROJECT, f"{pkg}/__init__.py": _INIT, f"{pkg}/credentials.py": _CREDENTIALS,
        f"{pkg}/tasks.py": _TASKS, f"{pkg}/plugin.py": _PLUGIN, f"{pkg}/py.typed": "",
        f"tests/test_{pkg.removeprefix('plait_')}_collection.py": _TEST,
        "README.md": _README, "CHANGELOG.md": _CHANGELOG,
    }
    for rel, template in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values), encoding="utf-8")
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(_DOCS.format(**values), encoding="utf-8")
    return {"path": str(target), "docs": str(docs), "files": sorted(files), "package": pkg,
            "plait_range": values["plait_range"], "checkout": str(checkout) if checkout else None}
