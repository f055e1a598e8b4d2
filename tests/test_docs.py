"""The user docs stay true: every ```python block runs, and the docs keep up with the API.

Each ```python block in docs/*.md (except docs/cli.md, which has its own owner) is run as a
complete program in a fresh interpreter, with PLAIT_HOME and PLAIT_DATABASE_URL pointed at
a temporary directory. Blocks that are not meant to run use ```text, ```pycon or
```console. The blocks run concurrently (they are independent processes); each test waits
for its own.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import plait
from plait import FlowOptions, TaskOptions
from plait.settings import PlaitSettings
from plait.states import TRANSITIONS, StateType

DOCS = Path(__file__).resolve().parent.parent / "docs"
NOT_OURS = {"cli.md"}  # written and tested elsewhere; its blocks are not run here
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
# Languages a block may be labelled with. "python" blocks are run; the others never are.
# A near-miss like "py" or "python3" is refused so that no example goes untested silently.
KNOWN_LANGUAGES = {"python", "text", "pycon", "console", "bash", "shell", "toml", "json", "ini", "yaml"}


@dataclasses.dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


def doc_files() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.md") if p.name not in NOT_OURS)


def code_blocks(path: Path) -> list[Block]:
    """Fenced code blocks of a Markdown file, in order."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, start = match.group("fence"), i
        language = match.group("info").strip().split(" ")[0].lower()
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence[0] * len(fence)) and not lines[i].strip().strip(fence[0])
        ):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: code block is never closed")
        blocks.append(Block(path, start + 1, language, "\n".join(body) + "\n"))
        i += 1
    return blocks


def python_blocks() -> list[Block]:
    """Runnable examples; blocks starting ``# file: ...`` are files of an example project,
    installed and exercised by their own test (tests/test_plugin_example.py)."""
    return [
        b for path in doc_files() for b in code_blocks(path)
        if b.language == "python" and not b.code.startswith("# file:")
    ]


# -- running the examples ------------------------------------------------------------------
_WORKDIR = Path(tempfile.mkdtemp(prefix="plait-docs-"))
_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, min(8, (os.cpu_count() or 2) * 2)))
_RUNS: dict[str, concurrent.futures.Future] = {}
atexit.register(shutil.rmtree, _WORKDIR, ignore_errors=True)


def _run_block(block: Block) -> subprocess.CompletedProcess:
    where = _WORKDIR / block.id.replace(".md:", "-")
    home = where / "home"
    home.mkdir(parents=True)
    script = where / "example.py"
    script.write_text(block.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(home), PLAIT_DATABASE_URL=f"sqlite:///{home / 'plait.db'}")
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _start_all() -> None:
    if not _RUNS:
        for block in python_blocks():
            _RUNS[block.id] = _EXECUTOR.submit(_run_block, block)


@pytest.mark.parametrize("block", python_blocks(), ids=lambda b: b.id)
def test_python_block_runs(block: Block) -> None:
    _start_all()
    done = _RUNS[block.id].result()
    assert done.returncode == 0, (
        f"the ```python block at docs/{block.id} exited with {done.returncode}\n"
        f"--- code ---\n{block.code}--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"
    )


# -- the docs' shape -----------------------------------------------------------------------
def test_our_pages_exist_and_have_examples() -> None:
    for name in ("index.md", "quickstart.md", "concepts.md"):
        assert (DOCS / name).is_file(), f"docs/{name} is missing"
    counts = {}
    for block in python_blocks():
        counts[block.path.name] = counts.get(block.path.name, 0) + 1
    assert counts.get("quickstart.md", 0) >= 3 and counts.get("concepts.md", 0) >= 15, counts


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_code_blocks_use_known_languages(path: Path) -> None:
    for block in code_blocks(path):
        assert block.language in KNOWN_LANGUAGES, (
            f"docs/{block.id}: code block labelled {block.language or '(nothing)'!r}; use 'python' "
            "for a runnable example, or 'text'/'pycon'/'console' for one that must not run"
        )


def _code_text() -> str:
    """All code in docs/: fenced blocks and `inline code` spans."""
    parts = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        parts += [b.code for b in code_blocks(path)]
        parts += re.findall(r"`([^`\n]+)`", text)
    return "\n".join(parts)


def test_every_public_name_is_documented() -> None:
    code = _code_text()
    missing = [name for name in plait.__all__ if not re.search(rf"(?<![\w]){re.escape(name)}(?!\w)", code)]
    assert not missing, f"names in plait.__all__ that no code in docs/ mentions: {missing}"


def _table_rows(text: str, marker: str) -> list[list[str]]:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    assert start in text and end in text, f"concepts.md lacks the {marker} table markers"
    section = text.split(start, 1)[1].split(end, 1)[0]
    rows = []
    for line in section.strip().splitlines()[2:]:  # skip header and separator
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))])
    return rows


def test_every_setting_is_in_concepts() -> None:
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    rows = {row[0].strip("`"): row for row in _table_rows(text, "settings")}
    fields = PlaitSettings.model_fields
    assert set(rows) == set(fields), (
        f"settings table out of date: missing {sorted(set(fields) - set(rows))}, "
        f"unknown {sorted(set(rows) - set(fields))}"
    )
    for name, info in fields.items():
        setting, env, default, meaning = rows[name]
        assert env == f"`PLAIT_{name.upper()}`", f"{name}: env var cell is {env}"
        assert meaning, f"{name}: no meaning given"
        value = info.default
        if isinstance(value, (bool, int, float, str)):
            expected = str(value).lower() if isinstance(value, bool) else str(value)
            assert f"`{expected}`" in default, f"{name}: default cell {default!r}, settings.py says {value!r}"


def test_transition_table_matches_the_code() -> None:
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    documented = {}
    for source, targets in _table_rows(text, "transitions"):
        names = set() if targets == "(nothing)" else {t.strip() for t in targets.split(",")}
        documented[source] = names
    actual = {s.title: {t.title for t in targets} for s, targets in TRANSITIONS.items()}
    assert documented == actual
    assert set(documented) == {t.title for t in StateType}


def test_every_option_is_in_the_options_reference() -> None:
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    section = text.split("## Options reference", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.M))
    options = {f.name for cls in (TaskOptions, FlowOptions) for f in dataclasses.fields(cls)}
    assert documented == options, (
        f"missing {sorted(options - documented)}, unknown {sorted(documented - options)}"
    )


def _slug(heading: str) -> str:
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_links_between_pages_resolve(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"^[a-z]+://", target):
            continue
        page, _, anchor = target.partition("#")
        linked = DOCS / page if page else path
        if page in NOT_OURS and not linked.exists():
            continue  # someone else's page, not written yet
        assert linked.is_file(), f"{path.name} links to missing page {page}"
        if anchor and linked.name not in NOT_OURS:
            headings = re.findall(r"^#{1,6} (.+)$", linked.read_text(encoding="utf-8"), flags=re.M)
            slugs = {_slug(h) for h in headings}
            assert anchor in slugs, f"{path.name} links to #{anchor}, not a heading of {linked.name}"
