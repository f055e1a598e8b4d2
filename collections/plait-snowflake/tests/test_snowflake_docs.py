"""The examples in README.md and docs/collections/plait-snowflake.md run as written.

Each page's ```python blocks run in order, as scripts sharing one PLAIT_HOME. Blocks that
only save blocks run as they are (saving connects to nothing). Before a block with a flow,
the saved "analytics" connector is pointed at the fakesnow server (in the same script), so
the flow runs against it with the real connector.
"""

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
    "docs page": COLLECTION.parents[1] / "docs" / "collections" / "plait-snowflake.md",
}

REDIRECT = """\
from plait_snowflake import SnowflakeConnector, SnowflakeCredentials

credentials = SnowflakeCredentials(
    account="plait-test", user="tester", password="docs-pw-1234", host="127.0.0.1", port={port}, protocol="http",
    login_timeout=10, connect_args={{"network_timeout": 5}},
    session_parameters={{"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False, "CLIENT_TELEMETRY_ENABLED": False}},
)
credentials.save("snowflake-etl", overwrite=True)
connector = SnowflakeConnector(credentials=credentials, database="{database}", schema_name="PUBLIC")
connector.save("analytics", overwrite=True)
"""


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def run(script: Path, code: str, home: Path) -> subprocess.CompletedProcess[str]:
    script.write_text(code)
    env = {**os.environ, "PLAIT_HOME": str(home)}
    env.pop("PLAIT_DATABASE_URL", None)
    return subprocess.run([sys.executable, str(script)], cwd=script.parent, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_python_examples_run(page: str, tmp_path: Path, fakesnow_port: int, database: str) -> None:
    path = PAGES[page]
    if not path.exists():
        pytest.skip(f"{path} is not here (installed without the repository)")
    blocks = python_blocks(path)
    assert any("@flow" in code for code in blocks), f"{page} has no ```python flow example"
    home = tmp_path / "home"
    for number, code in enumerate(blocks, start=1):
        script = code
        if "@flow" in code:  # the saved blocks point at fakesnow first (one process: faster)
            script = REDIRECT.format(port=fakesnow_port, database=database) + "\n" + code
        done = run(tmp_path / f"example_{number}.py", script, home)
        assert done.returncode == 0, f"{page} example {number} failed:\n{done.stdout}\n{done.stderr}"
        expected = re.search(r"print\(.*\)\s+# (.*)$", code, flags=re.M)
        if expected:
            assert done.stdout.strip().splitlines()[-1] == expected.group(1).strip()
