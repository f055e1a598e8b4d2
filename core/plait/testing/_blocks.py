"""The block conformance suite: what every block type must get right, checked offline.

    from plait.testing import assert_block_conforms

    def test_my_block_conforms():
        assert_block_conforms(MyCredentials, MyCredentials(user="robot", password="s3cr3t-pass"))

A collection runs it for each of its block types. Every failed check is reported at once, as
one ``AssertionError`` naming each check, what is wrong and how to fix it. The suite never
opens a network connection (a block that tries to while being built, saved or loaded fails
the check doing so); the save/load round trip runs in a throwaway ``PLAIT_HOME`` with its
own SQLite database.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pydantic import Secret, SecretBytes, SecretStr

if TYPE_CHECKING:
    import _socket

    from plait.blocks import Block

__all__ = ["BLOCK_CONFORMANCE_CHECKS", "assert_block_conforms"]

# Names of fields that hold a secret whatever their type says.
_SECRET_NAME = re.compile(
    r"(^|_)(password|passwd|passphrase|secret|token|api_key|apikey|private_key|secret_key|client_secret)$"
)


class _CheckFailed(Exception):
    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


def _fail(problem: str, fix: str) -> None:
    raise _CheckFailed(problem, fix)


# -- the checks -----------------------------------------------------------------------------------
def _check_description(cls: type[Block], example: Block) -> None:
    if not (cls.block_description or "").strip():
        _fail("the block type has no description",
              f"give {cls.__name__} a docstring (its first paragraph is the description) or set block_description")


def _check_field_descriptions(cls: type[Block], example: Block) -> None:
    missing = [name for name, info in cls.model_fields.items() if not (info.description or "").strip()]
    if missing:
        _fail(f"field(s) without a description: {', '.join(missing)}",
              "declare each field as `name: type = Field(..., description=\"what it is\")`")


def _check_code_example(cls: type[Block], example: Block) -> None:
    code = (cls.code_example or "").strip()
    if not code:
        _fail("the block type has no code_example",
              f"set `code_example: ClassVar[str] = '''...'''` showing how to save and use {cls.__name__}")
    if cls.__name__ not in code:
        _fail(f"code_example does not mention {cls.__name__}",
              f"show {cls.__name__} itself in the example, e.g. `{cls.__name__}.load(\"name\")`")
    try:
        compile(code, f"<{cls.__name__}.code_example>", "exec")
    except SyntaxError as exc:
        _fail(f"code_example is not valid Python (line {exc.lineno}: {exc.msg})", "fix the snippet's syntax")


def _check_schema_json(cls: type[Block], example: Block) -> None:
    try:
        schema = cls.block_schema()
        text = json.dumps(schema, sort_keys=True)
    except Exception as exc:
        _fail(f"block_schema() is not JSON-serializable ({type(exc).__name__}: {exc})",
              "use field types and defaults that pydantic can describe in JSON schema")
    if json.loads(text) != schema:
        _fail("block_schema() does not survive a JSON round trip unchanged",
              "avoid tuples, non-string keys or other values JSON turns into something else in defaults")
    if cls.schema_checksum() != cls.schema_checksum():
        _fail("schema_checksum() is not stable between calls", "make the JSON schema deterministic")


def _check_example_validates(cls: type[Block], example: Block) -> None:
    from pydantic import ValidationError

    from plait.blocks import block_to_dict

    if type(example) is not cls:
        _fail(f"the example is a {type(example).__name__}, not a {cls.__name__}", f"pass an instance of {cls.__name__}")
    data = json.loads(json.dumps(block_to_dict(example, reveal_secrets=True)))
    try:
        again = cls.model_validate(_revalidation_input(example))
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False, include_input=False)
        )
        _fail(f"the example's JSON form does not validate against the class ({where})",
              "make every field's JSON form (model_dump(mode='json')) acceptable input for the field")
    if again != example:
        differing = [n for n in cls.model_fields if getattr(again, n) != getattr(example, n)]
        _fail(f"the example changes when rebuilt from its JSON form (fields: {', '.join(differing) or '?'})",
              "make each field's JSON serialization round-trip to an equal value")
    try:
        import jsonschema  # optional: a second opinion on the published schema
    except ImportError:
        return
    try:
        jsonschema.validate(data, cls.model_json_schema())
    except jsonschema.ValidationError as exc:
        _fail(f"the example's JSON form does not match model_json_schema(): {exc.message}",
              "fix the fields' types or json_schema_extra so the published schema describes real values")


def _revalidation_input(block: Block) -> dict[str, Any]:
    """The block's JSON form (``model_dump_json``) with secret values put back as they are
    (bytes stay bytes), nested blocks likewise."""
    from plait.blocks._values import _contains_block, _field_kinds, _map_blocks, _reveal

    cls = type(block)
    out: dict[str, Any] = json.loads(block.model_dump_json())
    secret, nested = _field_kinds(cls)
    for name in cls.model_fields:
        value = getattr(block, name)
        if name in nested and _contains_block(value):
            out[name] = _map_blocks(value, _revalidation_input)
        elif name in secret and name in out:
            out[name] = _reveal(value)
    return out


def _secret_annotation_fields(cls: type[Block]) -> list[str]:
    from plait.blocks import is_secret_annotation

    return [name for name, info in cls.model_fields.items() if is_secret_annotation(info.annotation)]


def _check_secret_fields(cls: type[Block], example: Block) -> None:
    declared = cls.secret_fields()
    top = {name for name in declared if "." not in name}
    typed = _secret_annotation_fields(cls)
    missing = [name for name in typed if name not in top]
    if missing:
        _fail(f"secret_fields() leaves out secret-typed field(s): {', '.join(missing)}",
              "do not override secret_fields(), or include every SecretStr/SecretBytes/Secret field")
    unknown = [name for name in top if name not in cls.model_fields]
    if unknown:
        _fail(f"secret_fields() names field(s) the block does not have: {', '.join(unknown)}",
              "list only real fields")
    for name, classes in cls.nested_block_fields().items():
        for nested in classes:
            wanted = [f"{name}.{inner}" for inner in nested.secret_fields()]
            lacking = [w for w in wanted if w not in declared]
            if lacking:
                _fail(f"secret_fields() leaves out nested secret(s): {', '.join(lacking)}",
                      "do not override secret_fields(); the base class includes nested blocks' secrets")
    looks_secret = [
        name for name in cls.model_fields if _SECRET_NAME.search(name.lower()) and name not in typed
        and name not in cls.nested_block_fields()
    ]
    if looks_secret:
        _fail(f"field(s) named like secrets but not typed as secrets: {', '.join(looks_secret)}",
              "type them SecretStr (or SecretBytes / plait.blocks.SecretDict) so they are encrypted and masked")
    for name in cls.model_fields:
        value = getattr(example, name, None)
        if _holds_secret(value) and name not in top and name not in cls.nested_block_fields():
            _fail(f"field {name!r} holds a secret value but is not in secret_fields()",
                  "type the field as a secret type so secret_fields() lists it")


def _holds_secret(value: Any) -> bool:
    if isinstance(value, (SecretStr, SecretBytes, Secret)):
        return True
    if isinstance(value, dict):
        return any(_holds_secret(v) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_secret(v) for v in value)
    return False


def _plant(value: Any, canaries: list[str]) -> Any:
    """A copy of ``value`` with each secret string replaced by a unique canary."""
    from plait.blocks import Block

    def canary() -> str:
        text = f"plait-canary-{uuid.uuid4().hex}"
        canaries.append(text)
        return text

    def leaves(raw: Any) -> Any:
        if isinstance(raw, str):
            return canary()
        if isinstance(raw, bytes):
            return canary().encode()
        if isinstance(raw, dict):
            return {k: leaves(v) for k, v in raw.items()}
        if isinstance(raw, list):
            return [leaves(v) for v in raw]
        if isinstance(raw, tuple):
            return tuple(leaves(v) for v in raw)
        return raw

    if isinstance(value, SecretStr):
        return SecretStr(canary())
    if isinstance(value, SecretBytes):
        return SecretBytes(canary().encode())
    if isinstance(value, Secret):
        return type(value)(leaves(value.get_secret_value()))
    if isinstance(value, Block):
        return _planted_block(value, canaries)
    if isinstance(value, dict):
        return {k: _plant(v, canaries) for k, v in value.items()}
    if isinstance(value, list):
        return [_plant(v, canaries) for v in value]
    if isinstance(value, tuple):
        return tuple(_plant(v, canaries) for v in value)
    return value


def _planted_block(block: Block, canaries: list[str]) -> Block:
    cls = type(block)
    secret = set(_secret_annotation_fields(cls)) | {n for n in cls.secret_fields() if "." not in n}
    updates = {}
    for name in cls.model_fields:
        value = getattr(block, name)
        if name in secret or name in cls.nested_block_fields():
            updates[name] = _plant(value, canaries)
    return block.model_copy(update=updates)


def _check_secrets_masked(cls: type[Block], example: Block) -> None:
    from plait.blocks import block_to_dict

    if not cls.secret_fields():
        return
    canaries: list[str] = []
    planted = _planted_block(example, canaries)
    if not canaries:
        _fail("the example sets none of the secret fields, so masking cannot be checked",
              f"give the example a value for the secret field(s) {', '.join(cls.secret_fields())}")
    outputs: list[tuple[str, Callable[[], str]]] = [
        ("repr()", lambda: repr(planted)),
        ("str()", lambda: str(planted)),
        ("model_dump_json()", planted.model_dump_json),
        ("model_dump(mode='json')", lambda: json.dumps(planted.model_dump(mode="json"), default=str)),
        ("block_to_dict()", lambda: json.dumps(block_to_dict(planted), default=str)),
    ]
    for label, render in outputs:
        text = render()
        if any(c in text for c in canaries):
            _fail(f"a secret value shows in {label}",
                  "type the field SecretStr/SecretBytes/SecretDict and do not override __repr__/__str__ or "
                  "serializers to reveal it")


def _reveal(value: Any) -> Any:
    from plait.blocks._values import _reveal as reveal

    return reveal(value)


def _check_round_trip(cls: type[Block], example: Block) -> None:
    from plait.testing._harness import plait_test_harness

    identity = (example._document_id, example._document_name)
    with plait_test_harness():
        try:
            example.save("conformance-example")
            loaded = cls.load("conformance-example")
        except Exception as exc:
            _fail(f"save/load failed ({type(exc).__name__}: {exc})",
                  "make every field JSON-serializable and nested blocks registered or typed precisely")
        finally:
            # The throwaway database is gone after this check: forget the document it made.
            example._document_id, example._document_name = identity
    if type(loaded) is not cls:
        _fail(f"loading gave a {type(loaded).__name__}, not a {cls.__name__}",
              "register the class itself for its slug")
    for name in cls.model_fields:
        if _reveal(getattr(loaded, name)) != _reveal(getattr(example, name)):
            which = "secret" if name in _secret_annotation_fields(cls) else "value"
            _fail(f"field {name!r} changed in a save/load round trip ({which} differs)",
                  "make the field's JSON form (secrets: their revealed value) round-trip to an equal value")


BLOCK_CONFORMANCE_CHECKS: dict[str, Callable[[type, Any], None]] = {
    "description": _check_description,
    "field-descriptions": _check_field_descriptions,
    "code-example": _check_code_example,
    "schema-json": _check_schema_json,
    "example-validates": _check_example_validates,
    "secret-fields": _check_secret_fields,
    "secrets-masked": _check_secrets_masked,
    "save-load-round-trip": _check_round_trip,
}
"""Every check by name, in the order they run: ``name -> check(block_cls, example)``."""


# -- staying offline ------------------------------------------------------------------------------
_LOCAL = {"localhost", "127.0.0.1", "::1", "0.0.0.0", None, ""}


def _is_local(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    if isinstance(address, tuple) and address:
        host = address[0]
        return host in _LOCAL or str(host).startswith("127.")
    return True


class _NetworkUsed(BaseException):
    """BaseException: a block's own ``except Exception`` must not hide the attempt."""


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Refuse connections to anything but this machine while the checks run."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    # typeshed declares these methods on _socket.socket, the C base class of socket.socket
    def connect(self: _socket.socket, address: Any) -> None:
        if not _is_local(address):
            raise _NetworkUsed(f"tried to connect to {address!r}")
        real_connect(self, address)

    def connect_ex(self: _socket.socket, address: Any) -> int:
        if not _is_local(address):
            raise _NetworkUsed(f"tried to connect to {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local((host,)):
            raise _NetworkUsed(f"tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo


# -- the entry point ------------------------------------------------------------------------------
def assert_block_conforms(block_cls: type[Block], example: Block, *, checks: list[str] | None = None) -> None:
    """Run the conformance checks on ``block_cls`` with ``example`` (a valid instance).

    Args:
        block_cls: The block type.
        example: An instance with realistic values, secret fields set.
        checks: Only these checks (names from ``BLOCK_CONFORMANCE_CHECKS``); default all.

    Raises:
        AssertionError: One line per failed check: ``[check] problem. Fix: how``.
    """
    from plait.blocks import Block

    if not (isinstance(block_cls, type) and issubclass(block_cls, Block)):
        raise AssertionError(f"assert_block_conforms() takes a Block subclass, got {block_cls!r}")
    names = list(BLOCK_CONFORMANCE_CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in BLOCK_CONFORMANCE_CHECKS]
    if unknown:
        raise AssertionError(f"unknown conformance check(s) {unknown}; known: {list(BLOCK_CONFORMANCE_CHECKS)}")
    failures = []
    with _offline():
        for name in names:
            try:
                BLOCK_CONFORMANCE_CHECKS[name](block_cls, example)
            except _CheckFailed as exc:
                failures.append(f"[{name}] {exc.problem}. Fix: {exc.fix}.")
            except _NetworkUsed as exc:
                failures.append(f"[{name}] the block {exc} during the check. Fix: do no network I/O when a "
                                "block is built, validated, saved or loaded; connect only in methods such as "
                                "test_connection().")
    if failures:
        count = f"{len(failures)} of {len(names)}"
        raise AssertionError(
            f"{block_cls.__name__} fails {count} block conformance checks:\n" + "\n".join(f"  {f}" for f in failures)
        )
