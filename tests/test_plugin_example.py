"""The example plugin in docs/plugins.md is installed with pip and exercised, so it keeps working."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILE_BLOCK = re.compile(r"```(?:python|toml)\n# file: (?P<path>\S+)\n(?P<body>.*?)```", re.DOTALL)

CHECK = """
import json
from plait import flow, plugins
from plait_hello import Greeting, greet
import plait_hello.plugin as hello_plugin

@flow
def welcome(names):
    return [greet(name, Greeting(salutation="Hi")) for name in names]

before = {p.name: p for p in plugins.plugins()}["plait_hello"]  # listed from metadata, not imported
result = welcome(["Ada", "Grace"])  # its observer is declared: running a task imports the plugin
info = {p.name: p for p in plugins.plugins()}["plait_hello"]
print(json.dumps({
    "result": result,
    "before": [before.status, before.declares["block_types"], before.hooks],
    "loaded": info.loaded,
    "distribution": info.distribution,
    "hooks": info.hooks,
    "block": "greeting" in plugins.block_classes(),
    "tasks": [t.name for owner, t in plugins.registered_tasks() if owner == "plait_hello"],
    "observed": len(hello_plugin.GREETED),
    "diagnoses": [str(d) for d in plugins.diagnoses()],
}))
"""


def test_docs_example_plugin_installs_and_runs(tmp_path):
    doc = (ROOT / "docs" / "plugins.md").read_text()
    files = {m["path"]: m["body"] for m in FILE_BLOCK.finditer(doc)}
    assert {"plait-hello/pyproject.toml", "plait-hello/plait_hello/__init__.py",
            "plait-hello/plait_hello/plugin.py"} <= set(files)
    for rel, body in files.items():
        target = tmp_path / "src" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(tmp_path / "src" / "plait-hello")],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PYTHONPATH=str(site), PLAIT_HOME=str(tmp_path / "home"), PLAIT_LOG_TO_CONSOLE="false")
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["result"] == ["Hi, Ada!", "Hi, Grace!"]
    # discovery read the declarations without importing the module
    assert report["before"] == ["not imported", ["greeting"],
                                ["plait_register_blocks", "plait_register_tasks", "plait_task_run_state_changed"]]
    assert report["loaded"] and report["distribution"] == "plait-hello"
    assert report["hooks"] == ["plait_register_blocks", "plait_register_tasks", "plait_task_run_state_changed"]
    assert report["block"] and report["tasks"] == ["greet"]
    assert report["observed"] == 2
    assert report["diagnoses"] == []
