"""Blocks under concurrency: several processes overwrite a parent block whose nested block is
replaced on every save, while other processes load it in a loop. Every load must see one
consistent snapshot (never "refers to a block that no longer exists", never a parent from
one save with the nested block of another), and no writer may fail. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

WORKER = textwrap.dedent('''
    """One process of the concurrency test: init | write | load."""
    import json
    import os
    import sys
    import time

    from pydantic import Field, SecretStr

    from plait.blocks import Block


    class Inner(Block):
        """The nested block: replaced by an anonymous copy on every save of its parent."""

        version: int = Field(description="Which save wrote it.")
        token: SecretStr = Field(description="A secret, so every load decrypts.")
        payload: str = Field(description="Some bulk.")


    class Outer(Block):
        """The parent block that writers overwrite."""

        version: int = Field(description="Which save wrote it.")
        inner: Inner = Field(description="Saved anonymously with the parent.")
        extra: list[Inner] = Field(default_factory=list, description="More nested blocks.")


    def make(version: int) -> Outer:
        inner = Inner(version=version, token=f"tok-{version}", payload="x" * 500)
        extra = [Inner(version=version, token=f"tok-{version}-{i}", payload="y") for i in range(2)]
        return Outer(version=version, inner=inner, extra=extra)


    role, stop_file = sys.argv[1], sys.argv[2]
    if role == "init":
        make(0).save("shared")
        print(json.dumps({"ok": True}))
    elif role == "write":
        writes, failures = 0, []
        deadline = time.monotonic() + 180
        while not os.path.exists(stop_file) and time.monotonic() < deadline:
            writes += 1
            try:
                make(os.getpid() * 100_000 + writes).save("shared", overwrite=True)
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
        print(json.dumps({"writes": writes, "failures": failures}))
    else:
        loads, failures = int(sys.argv[3]), []
        for _ in range(loads):
            try:
                block = Outer.load("shared")
                versions = {block.inner.version, *(e.version for e in block.extra)}
                tokens = {block.inner.token.get_secret_value(), *(e.token.get_secret_value() for e in block.extra)}
                if versions != {block.version} or f"tok-{block.version}" not in tokens:
                    failures.append(f"torn load: parent {block.version}, nested {sorted(versions)}")
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
        print(json.dumps({"loads": loads, "failures": failures}))
''')

WRITERS = 3
LOADERS = 3
LOADS_EACH = 150  # 450 loads in all


def _run(script: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )


def _result(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_concurrent_overwrites_never_tear_a_load(plait_env: str, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    stop = tmp_path / "stop"
    assert _result(_run(script, "init", str(stop)), 120) == {"ok": True}

    writers = [_run(script, "write", str(stop)) for _ in range(WRITERS)]
    time.sleep(1.0)  # let the writers get going before the first load
    loaders = [_run(script, "load", str(stop), str(LOADS_EACH)) for _ in range(LOADERS)]
    try:
        loaded = [_result(p, 300) for p in loaders]
    finally:
        stop.touch()
    written = [_result(p, 300) for p in writers]

    loads = sum(r["loads"] for r in loaded)
    load_failures = [f for r in loaded for f in r["failures"]]
    write_failures = [f for r in written for f in r["failures"]]
    writes = sum(r["writes"] for r in written)
    print(f"{loads} loads and {writes} overwrites in {WRITERS + LOADERS} processes")  # shown with -s
    assert loads >= 400
    assert writes >= 30, f"only {writes} overwrites happened during the loads: the test proved nothing"
    assert load_failures == [], f"{len(load_failures)} of {loads} loads failed, e.g. {load_failures[:3]}"
    assert write_failures == [], f"{len(write_failures)} of {writes} saves failed, e.g. {write_failures[:3]}"

    # Every overwrite replaced the anonymous nested blocks: exactly one set is left.
    from plait.blocks import list_documents

    everything = list_documents(include_anonymous=True)
    assert sorted(d["slug"] for d in everything) == ["inner", "inner", "inner", "outer"]


def _insert_elsewhere(name: str) -> None:
    """Commit a document through another connection of the same database."""
    import uuid
    from datetime import datetime

    from plait._store.database import Database, get_database
    from plait._store.models import BLOCK_DOCUMENTS

    other = Database(get_database().engine.url.render_as_string(hide_password=False), migrate=False)
    try:
        now = datetime.now(UTC)
        with other.engine.begin() as conn:
            conn.execute(BLOCK_DOCUMENTS.insert().values(
                id=str(uuid.uuid4()), name=name, slug="outer", schema_checksum="x", data={}, created=now, updated=now,
            ))
    finally:
        other.dispose()


def test_a_read_sees_one_snapshot_and_a_write_locks_out_other_writers(plait_env: str) -> None:
    """The mechanism behind the test above, checked directly on each backend."""
    from plait._store.blocks import session

    _insert_elsewhere("first")
    with session(action="read blocks from") as tx:
        assert tx.names() == ["first"]
        _insert_elsewhere("second")  # committed while the read is under way
        assert tx.names() == ["first"]  # ...and not seen by it
        assert tx.get_by_name("outer", "second") is None
    with session(action="read blocks from") as tx:
        assert tx.names() == ["first", "second"]

    with session(action="save a block in", write=True) as tx:
        doc = tx.get_by_name("outer", "first")
        assert doc is not None
        if plait_env.startswith("sqlite"):
            import sqlite3

            path = plait_env.removeprefix("sqlite:///")
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")  # the write lock is taken from the start
            finally:
                other.close()
        else:
            from sqlalchemy import create_engine

            engine = create_engine(plait_env.replace("postgresql://", "postgresql+psycopg://", 1))
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SET lock_timeout = '200ms'")
                    with pytest.raises(Exception, match="lock timeout"):
                        conn.exec_driver_sql(f"SELECT id FROM block_documents WHERE id = '{doc.id}' FOR UPDATE")
            finally:
                engine.dispose()
