"""Bad input around blocks gives one clear error naming the thing and the fix, never a
traceback, and loses nothing: cyclic ``$block`` references (refused at apply and at save; a
store made cyclic by hand loads with a clear error and can be repaired), a block type that
holds its own type, ``{"$secret": null}`` in a stored document, a blocks file nested 3,000
levels deep, and ``${env:NAME`` without its closing brace. SQLite and PostgreSQL.
"""

from __future__ import annotations

import textwrap
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import Field, SecretStr

from plait import plugins
from plait.blocks import Block, NotificationBlock, apply_blocks_file, list_documents, load_document
from plait.exceptions import BlockError, BlocksFileError
from plait.hookspecs import hookimpl


class Hop(Block):
    """A stop on the way to another notification block."""

    to: NotificationBlock | None = Field(default=None, description="Where the hop leads.")


class Relay(NotificationBlock):
    """Delivers a message by handing it to another notification block."""

    channel: str = Field(description="Label of this hop.")
    token: SecretStr = Field(default=SecretStr("tok-default"), description="Credential of this hop.")
    next: NotificationBlock | None = Field(default=None, description="The block to hand messages to.")
    via: Hop | None = Field(default=None, description="A stop on the way.")


PLUGIN = types.SimpleNamespace(__name__="test_bad_input_plugin")


@hookimpl
def _register(register: Any) -> None:
    register(Relay)
    register(Hop)


PLUGIN.plait_register_blocks = _register


@pytest.fixture(autouse=True)
def registered() -> Any:
    plugins.register_plugin("test-bad-input", PLUGIN)
    yield
    plugins.unregister_plugin("test-bad-input")


@pytest.fixture
def env(plait_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("PLAIT_ENCRYPTION_KEY", raising=False)
    return plait_env


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- raw access to the store, to damage it the way an old version or a hand edit could ---------
def raw_documents() -> dict[str, dict[str, Any]]:
    from sqlalchemy import select

    from plait._store.database import get_database
    from plait._store.models import BLOCK_DOCUMENTS

    table = BLOCK_DOCUMENTS
    with get_database().engine.connect() as conn:
        return {row.name: dict(row._mapping) for row in conn.execute(select(table))}


def raw_references() -> list[tuple[str, str, str]]:
    from sqlalchemy import select

    from plait._store.database import get_database
    from plait._store.models import BLOCK_DOCUMENT_REFERENCES

    t = BLOCK_DOCUMENT_REFERENCES
    with get_database().engine.connect() as conn:
        return sorted(
            (r.parent_document_id, r.field_name, r.child_document_id)
            for r in conn.execute(select(t.c.parent_document_id, t.c.field_name, t.c.child_document_id))
        )


def raw_point(parent_id: str, field_name: str, child_id: str) -> None:
    """Make ``parent_id`` reference ``child_id`` in ``field_name``, as plait's save would."""
    from sqlalchemy import select

    from plait._store.database import get_database
    from plait._store.models import BLOCK_DOCUMENT_REFERENCES, BLOCK_DOCUMENTS

    docs, refs = BLOCK_DOCUMENTS, BLOCK_DOCUMENT_REFERENCES
    with get_database().engine.begin() as conn:
        data = dict(conn.execute(select(docs.c.data).where(docs.c.id == parent_id)).scalar_one())
        data[field_name] = {"$ref": child_id}
        conn.execute(docs.update().where(docs.c.id == parent_id).values(data=data))
        conn.execute(refs.insert().values(
            id=str(uuid.uuid4()), parent_document_id=parent_id, field_name=field_name, child_document_id=child_id,
        ))


def raw_set_field(doc_id: str, field_name: str, value: Any) -> None:
    from sqlalchemy import select

    from plait._store.database import get_database
    from plait._store.models import BLOCK_DOCUMENTS

    docs = BLOCK_DOCUMENTS
    with get_database().engine.begin() as conn:
        data = dict(conn.execute(select(docs.c.data).where(docs.c.id == doc_id)).scalar_one())
        data[field_name] = value
        conn.execute(docs.update().where(docs.c.id == doc_id).values(data=data))


def cli_error(*args: str) -> str:
    """The one-line error of a ``plait`` command that must fail with exit code 1."""
    from plait.cli import cli

    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


A_THEN_B = """
    [[blocks]]
    type = "relay"
    name = "a"
    values = { channel = "a" }

    [[blocks]]
    type = "relay"
    name = "b"
    values = { channel = "b", next = { "$block" = "relay/a" } }
"""


# -- cycles: refused at apply --------------------------------------------------------------------
def test_apply_refuses_a_file_that_closes_a_cycle_with_saved_blocks(env: str, tmp_path: Path) -> None:
    apply_blocks_file(write(tmp_path, "first.toml", A_THEN_B))
    before, refs_before = raw_documents(), raw_references()
    closing = write(tmp_path, "second.yaml", """
        blocks:
          - type: relay
            name: a
            values: {channel: a, next: {$block: relay/b}}
    """)
    for dry_run in (True, False):
        with pytest.raises(BlocksFileError) as info:
            apply_blocks_file(closing, dry_run=dry_run)
        text = str(info.value)
        assert text.startswith(f"{closing}: block #1 'relay/a', field 'next': applying the file would make a cycle: ")
        assert "relay/a field 'next' → relay/b field 'next' → relay/a" in text
        assert "A block cannot contain itself" in text and "point the field at another block" in text
    assert raw_documents() == before and raw_references() == refs_before  # nothing written
    assert Relay.load("b").next.channel == "a"  # both still load
    assert "would make a cycle" in cli_error("block", "apply", str(closing))


def test_apply_refuses_a_cycle_through_an_inline_block(env: str, tmp_path: Path) -> None:
    Relay(channel="b").save("b")
    Relay(channel="a", next=Relay.load("b")).save("a")
    before = raw_documents()
    path = write(tmp_path, "loop.yaml", """
        blocks:
          - type: relay
            name: c
            values: {channel: c}
          - type: relay
            name: b
            values:
              channel: b
              via: {to: {$block: relay/a}}
    """)
    with pytest.raises(BlocksFileError) as info:
        apply_blocks_file(path)
    text = str(info.value)
    assert "block #2 'relay/b', field 'via.to'" in text
    assert "relay/b field 'via.to' → relay/a field 'next' → relay/b" in text
    assert raw_documents() == before  # not even relay/c, which comes first

    self_ref = write(tmp_path, "self.toml", """
        [[blocks]]
        type = "relay"
        name = "c"
        values = { channel = "c", next = { "$block" = "relay/c" } }
    """)
    with pytest.raises(BlocksFileError, match=r"block #1 'relay/c', field 'next': a block cannot contain itself"):
        apply_blocks_file(self_ref)
    assert raw_documents() == before


# -- cycles: refused at save ---------------------------------------------------------------------
def test_save_refuses_to_close_a_cycle(env: str) -> None:
    Relay(channel="a").save("a")
    Relay(channel="b", next=Relay.load("a")).save("b")
    Relay(channel="c", next=Relay.load("b")).save("c")
    before, refs_before = raw_documents(), raw_references()

    a = Relay.load("a")
    a.next = Relay.load("c")  # a -> c -> b -> a
    with pytest.raises(BlockError) as info:
        a.save("a", overwrite=True)
    text = str(info.value)
    assert text.startswith("cannot save block 'relay/a': it would contain itself (")
    assert "relay/a field 'next' → relay/c field 'next' → relay/b field 'next' → relay/a" in text
    assert "point the field at another block" in text
    assert raw_documents() == before and raw_references() == refs_before

    a.next = a  # directly
    with pytest.raises(BlockError, match="contains itself"):
        a.save("a", overwrite=True)
    # Through an inline (anonymous) hop as well.
    a.next = None
    a.via = Hop(to=Relay.load("b"))
    with pytest.raises(BlockError, match=r"relay/a field 'via' → hop/anonymous-.* field 'to' → relay/b field 'next' → relay/a"):
        a.save("a", overwrite=True)
    assert raw_documents() == before and raw_references() == refs_before
    assert Relay.load("c").next.next.channel == "a"


def test_save_refuses_a_block_that_contains_itself_in_memory(env: str) -> None:
    x = Relay(channel="x")
    y = Relay(channel="y", next=x)
    x.next = y
    with pytest.raises(BlockError) as info:
        x.save("x")
    text = str(info.value)
    assert "cannot save this Relay: it contains itself (Relay field 'next' → Relay field 'next' → the same Relay again)" in text
    assert list_documents(include_anonymous=True) == []


# -- cycles: a store already cyclic (an older plait, a hand edit) --------------------------------
def test_a_cyclic_store_loads_with_a_clear_error_and_can_be_repaired(env: str, tmp_path: Path) -> None:
    a_id = Relay(channel="a").save("a")
    b_id = Relay(channel="b", next=Relay.load("a")).save("b")
    raw_point(a_id, "next", b_id)  # a -> b -> a, behind plait's back

    for load in (lambda: Relay.load("a"), lambda: Block.load("relay/a"), lambda: load_document("a")):
        with pytest.raises(BlockError) as info:
            load()
        text = str(info.value)
        assert text.startswith("block 'relay/a' contains itself: relay/a field 'next' → relay/b field 'next' → relay/a.")
        assert "save one of these blocks again with another value for that field" in text
    assert "contains itself" in cli_error("block", "inspect", "relay/a")

    # The fix the message names works: re-apply b without the reference...
    fix = write(tmp_path, "fix.toml", """
        [[blocks]]
        type = "relay"
        name = "b"
        values = { channel = "b" }
    """)
    assert [r.action for r in apply_blocks_file(fix)] == ["updated"]
    assert Relay.load("a").next.channel == "b"
    assert Relay.load("b").next is None


def test_a_block_of_a_cycle_can_be_deleted(env: str) -> None:
    from plait.cli.blocks import block_delete

    a_id = Relay(channel="a").save("a")
    b_id = Relay(channel="b", next=Relay.load("a")).save("b")
    c_id = Relay(channel="c", next=Relay.load("b")).save("c")
    raw_point(a_id, "next", b_id)
    # c uses b from outside the cycle: b stays protected.
    with pytest.raises(BlockError, match=r"block 'relay/b' is used by block 'relay/c' \(field 'next'\)"):
        Relay.delete("b")
    # a is used only by b, which a itself leads to: deleting it breaks the cycle.
    assert block_delete("relay/a") == {"name": "a", "slug": "relay", "id": a_id}
    with pytest.raises(BlockError, match="refers in field 'next' to a block that no longer exists; save it again"):
        Relay.load("b")
    Relay.delete("c")
    Relay.delete("b")
    assert raw_documents() == {} and raw_references() == []
    assert c_id


# -- a block type that holds its own type --------------------------------------------------------
def test_a_block_type_holding_itself_is_refused_at_definition() -> None:
    with pytest.raises(BlockError) as info:

        class Node(Block):
            """A tree node."""

            label: str = Field(description="Label.")
            child: Node | None = Field(default=None, description="The next node.")

    text = str(info.value)
    assert text.startswith("block type Node holds itself: Node.child → Node.")
    assert "give the field another type" in text and "Node.load(name)" in text

    with pytest.raises(BlockError, match=r"block type Tree holds itself: Tree.children → Tree"):

        class Tree(Block):
            """Children in a list count too."""

            children: list[Tree] = Field(default_factory=list, description="Subtrees.")


class Left(Block):
    """One half of a pair of types that hold each other."""

    right: Right | None = Field(default=None, description="The other half.")


class Right(Block):
    """The other half."""

    left: Left | None = Field(default=None, description="The first half.")


def test_block_types_holding_each_other_are_refused_when_used(env: str) -> None:
    # Left could not see Right when it was defined; the loop is refused at first use.
    with pytest.raises(BlockError, match=r"block type Left holds itself: Left.right → Right.left → Left"):
        Left.secret_fields()
    with pytest.raises(BlockError, match=r"block type Right holds itself: Right.left → Left.right → Right"):
        Right(left=Left()).save("pair")
    assert list_documents(include_anonymous=True) == []


# -- a damaged secret ----------------------------------------------------------------------------
def test_a_null_secret_in_a_stored_document_is_explained(env: str, tmp_path: Path) -> None:
    doc_id = Relay(channel="hop", token="tok-original-123").save("hop")
    raw_set_field(doc_id, "token", {"$secret": None})
    with pytest.raises(BlockError) as info:
        Relay.load("hop")
    text = str(info.value)
    assert text.startswith("block 'relay/hop' holds a damaged secret in field 'token': its stored \"$secret\" is null")
    assert "Save the block again with a value for that field (overwrite=True)" in text
    assert "damaged secret in field 'token'" in cli_error("block", "inspect", "relay/hop")

    # Nested inside another block, and met by a blocks file: the same clear message.
    Relay(channel="outer", next=Relay(channel="inline", token="tok-inline-123")).save("outer")
    inline_id = next(d["id"] for n, d in raw_documents().items() if n.startswith("anonymous-"))
    raw_set_field(inline_id, "token", {"$secret": 12345})
    with pytest.raises(BlockError, match=r"block 'relay/anonymous-.*' holds a damaged secret in field 'token': its stored \"\$secret\" is a int"):
        Relay.load("outer")
    # A blocks file cannot use a damaged block...
    uses = write(tmp_path, "uses.toml", """
        [[blocks]]
        type = "relay"
        name = "user"
        values = { channel = "user", next = { "$block" = "relay/hop" } }
    """)
    with pytest.raises(BlocksFileError, match=r"field 'next': block 'relay/hop' holds a damaged secret in field 'token'"):
        apply_blocks_file(uses)
    # ...but one that gives it values again repairs it, as saving it again does.
    repair = write(tmp_path, "repair.toml", """
        [[blocks]]
        type = "relay"
        name = "hop"
        values = { channel = "hop", token = "tok-file-789" }
    """)
    assert [r.action for r in apply_blocks_file(repair, dry_run=True)] == ["updated"]
    assert [r.action for r in apply_blocks_file(repair)] == ["updated"]
    assert Relay.load("hop").token.get_secret_value() == "tok-file-789"
    Relay(channel="outer", next=Relay(channel="inline", token="tok-new-456")).save("outer", overwrite=True)
    assert Relay.load("outer").next.token.get_secret_value() == "tok-new-456"


# -- blocks files nested absurdly deep ------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_a_blocks_file_nested_3000_deep_is_refused(env: str, tmp_path: Path, suffix: str) -> None:
    deep = "[" * 3000 + "]" * 3000
    if suffix == ".yaml":
        text = f"blocks:\n  - type: relay\n    name: deep\n    values:\n      channel: {deep}\n"
    else:
        text = f'[[blocks]]\ntype = "relay"\nname = "deep"\nvalues = {{ channel = {deep} }}\n'
    path = tmp_path / f"deep{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BlocksFileError) as info:
        apply_blocks_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert "nested too deeply" in text or "nested more than 64 levels deep" in text
    assert "flatten" in text
    assert list_documents(include_anonymous=True) == []
    assert "flatten" in cli_error("block", "apply", str(path))


def test_deep_values_and_self_containing_yaml_name_the_field(env: str, tmp_path: Path) -> None:
    path = write(tmp_path, "deep.yaml", "blocks:\n  - type: relay\n    name: deep\n    values:\n      channel: "
                 + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(BlocksFileError, match=r"block #1 relay/deep, field 'channel\[0\]\[0\].*': nested more than 64 levels"):
        apply_blocks_file(path)
    # A YAML alias can make a list that contains itself; walking it would never end.
    looped = write(tmp_path, "loop.yaml", """
        blocks:
          - type: relay
            name: loop
            values:
              channel: &x [*x]
    """)
    with pytest.raises(BlocksFileError, match="nested more than 64 levels deep; a block's values need only a few levels"):
        apply_blocks_file(looped)
    assert list_documents(include_anonymous=True) == []


# -- ${env:NAME without its brace ----------------------------------------------------------------
def test_an_unclosed_env_reference_names_the_line_field_and_fix(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", "/home/robot")
    toml = write(tmp_path, "blocks.toml", """
        [[blocks]]
        type = "relay"
        name = "ops"

        [blocks.values]
        channel = "${env:HOME"
    """)
    with pytest.raises(BlocksFileError) as info:
        apply_blocks_file(toml)
    text = str(info.value)
    assert text == (
        f"{toml}, line 7: block relay/ops, field 'channel': '${{env:HOME' has no closing '}}'; "
        "write ${env:HOME} (or $${env:...} for the literal text)"
    )
    yaml = write(tmp_path, "blocks.yaml", """
        blocks:
          - type: relay
            name: ops
            values:
              channel: ok
              next: {channel: "db-${env:HOME.internal"}
    """)
    with pytest.raises(BlocksFileError, match=r"line 7: block relay/ops, field 'next.channel': '\$\{env:HOME' has no closing"):
        apply_blocks_file(yaml)
    assert list_documents(include_anonymous=True) == []

    # Closed, and escaped, references still work.
    good = write(tmp_path, "good.yaml", """
        blocks:
          - type: relay
            name: ops
            values: {channel: "${env:HOME}/$${env:HOME}"}
    """)
    assert [r.action for r in apply_blocks_file(good)] == ["created"]
    assert Relay.load("ops").channel == "/home/robot/${env:HOME}"
