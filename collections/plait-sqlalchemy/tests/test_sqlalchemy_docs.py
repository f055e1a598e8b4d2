"""The flow examples in README.md and docs/collections/plait-sqlalchemy.md run as written."""

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
    "docs page": COLLECTION.parents[1] / "docs" / "collections" / "plait-sqlalchemy.md",
}


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_python_examples_run(page: str, tmp_path: Path) -> None:
    path = PAGES[page]
    if not path.exists():
        pytest.skip(f"{path} is not here (installed without the repository)")
    blocks = python_blocks(path)
    assert blocks, f"{page} has no ```python example"
    for number, code in enumerate(blocks, start=1):
        script = tmp_path / f"example_{number}.py"
        script.write_text(code)
        env = {**os.environ, "PLAIT_HOME": str(tmp_path / "home")}
        env.pop("PLAIT_DATABASE_URL", None)
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"{page} example {number} failed:\n{done.stdout}\n{done.stderr}"
        expected = re.search(r"print\(.*\)\s+# (.*)$", code, flags=re.M)
        if expected:
            assert done.stdout.strip().splitlines()[-1] == expected.group(1).strip()
