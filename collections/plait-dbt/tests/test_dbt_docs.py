"""The flow examples in README.md and docs/collections/plait-dbt.md run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

COLLECTION = Path(__file__).resolve().parents[1]
PAGES = {
    "README.md": COLLECTION / "README.md",
    "docs page": COLLECTION.parents[1] / "docs" / "collections" / "plait-dbt.md",
}


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_the_readme_shows_the_docs_pages_flow() -> None:
    if not PAGES["docs page"].exists():
        pytest.skip("the docs page is not here (installed without the repository)")
    assert python_blocks(PAGES["README.md"]) == python_blocks(PAGES["docs page"])


def test_python_examples_run(tmp_path: Path) -> None:
    path = PAGES["docs page"] if PAGES["docs page"].exists() else PAGES["README.md"]
    blocks = python_blocks(path)
    assert blocks, f"{path.name} has no ```python example"
    for number, code in enumerate(blocks, start=1):
        workdir = tmp_path / f"example_{number}"
        workdir.mkdir()
        script = workdir / "example.py"
        script.write_text(code)
        env = {**os.environ, "PLAIT_HOME": str(workdir / "home")}
        env.pop("PLAIT_DATABASE_URL", None)
        done = subprocess.run([sys.executable, str(script)], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, f"{path.name} example {number} failed:\n{done.stdout}\n{done.stderr}"
        expected = re.search(r"print\(.*\)\s+# (.*)$", code, flags=re.M)
        if expected:
            assert done.stdout.strip().splitlines()[-1] == expected.group(1).strip()
