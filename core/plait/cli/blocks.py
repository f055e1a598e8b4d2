"""``plait block ...``: list block types, and create, inspect, test, delete and apply saved blocks.

Each command wraps a plain function of this module that returns data (``block_types``,
``block_ls``, ``block_create``, ``block_inspect``, ``block_delete``, ``block_test``,
``block_apply``); tests and scripts call those directly. Secret values never reach the
output unless asked for (``block_inspect(..., show_secrets=True)``): they are shown as
``***``, and error messages have them replaced by ``***``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from plait.cli._app import PlaitGroup, json_option

__all__ = [
    "MASK",
    "block_types",
    "block_ls",
    "block_fields",
    "parse_assignments",
    "parse_field_value",
    "block_create",
    "block_inspect",
    "block_delete",
    "block_test",
    "block_apply",
    "block_group",
]

MASK = "***"


# -- helpers ------------------------------------------------------------------------------------
def _blocks() -> Any:
    import plait.blocks as blocks

    return blocks


def _schema_types(prop: dict[str, Any]) -> set[str]:
    types: set[str] = set()
    kind = prop.get("type")
    if isinstance(kind, str):
        types.add(kind)
    elif isinstance(kind, list):
        types.update(kind)
    for option in prop.get("anyOf", []) + prop.get("oneOf", []):
        types |= _schema_types(option)
    return types


def block_fields(slug: str) -> list[dict[str, Any]]:
    """The fields of block type ``slug``, in declaration order.

    Returns:
        ``[{name, description, required, default, secret, text, block}]``: ``text`` is true
        when a value is taken as typed (string fields), false when it is parsed as JSON;
        ``block`` is true for a field holding another saved block (given by name).

    Raises:
        plait.exceptions.BlockNotFound: No block type ``slug`` (with suggestions).
    """
    cls = _blocks().get_block_class(slug)
    schema = cls.model_json_schema().get("properties", {})
    secret = {name.split(".")[0] for name in cls.secret_fields() if "." not in name}
    nested = cls.nested_block_fields()
    fields = []
    for name, info in cls.model_fields.items():
        prop = schema.get(name, {})
        required = info.is_required()
        default = None if required else info.get_default(call_default_factory=True)
        if name in secret and default is not None:
            default = MASK
        elif name in nested:
            default = None  # a block object; the description says what an empty answer means
        else:
            from pydantic_core import to_jsonable_python

            default = to_jsonable_python(default, fallback=str)
        fields.append(
            {
                "name": name,
                "description": info.description or prop.get("description") or "",
                "required": required,
                "default": default,
                "secret": name in secret,
                "text": "string" in _schema_types(prop),
                "block": name in nested,
            }
        )
    return fields


def parse_field_value(field: dict[str, Any], text: str) -> Any:
    """A value typed for ``field`` (one of ``block_fields``): a saved block for a block field,
    the text itself for a string field, else the text parsed as JSON (the text itself when
    it is not JSON, for the block's validation to judge)."""
    if field["block"]:
        return _blocks().load_document(text.strip())
    if field["text"]:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(slug: str, assignments: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["url=https://...", "port=25"]`` -> ``{"url": "https://...", "port": 25}`` for ``slug``.

    Raises:
        ValueError: An assignment without ``=`` or naming a field the type does not have.
    """
    fields = {f["name"]: f for f in block_fields(slug)}
    values: dict[str, Any] = {}
    for item in assignments:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            # Not quoting the argument: it may be a secret typed without its field name.
            raise ValueError("--set takes FIELD=VALUE; one argument has no '=' or no field name")
        if name not in fields:
            raise ValueError(
                f"block type {slug!r} has no field {name!r}; its fields: {', '.join(fields) or '(none)'}"
            )
        values[name] = parse_field_value(fields[name], text)
    return values


def _scrub(text: str, block: Any) -> str:
    """``text`` with the block's secrets (and every registered one) masked, by the one
    masking function (``plait._masking.mask``)."""
    from plait._masking import mask, secret_values

    return mask(text, extra=secret_values(block))


def _validation_message(slug: str, exc: Any) -> str:
    """A pydantic ValidationError as one line naming fields and problems, never the input."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(the block as a whole)"
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"field {loc!r}: {message}")
    return f"invalid {slug} block: " + "; ".join(parts)


def _document(reference: str) -> dict[str, Any]:
    """The listing entry (name, slug, id, created, updated) of a saved block."""
    blocks = _blocks()
    reference = reference.strip()
    block = blocks.load_document(reference)  # BlockNotFound with suggestions
    slug = block.block_type_slug
    name = reference.partition("/")[2] if "/" in reference else reference
    for doc in blocks.list_documents(slug=slug, include_anonymous=True):
        if doc["name"] == name:
            return {**doc, "block": block}
    return {"name": name, "slug": slug, "type_name": type(block).block_type_name, "id": None,
            "created": None, "updated": None, "block": block}


# -- the plain functions ------------------------------------------------------------------------
def block_types() -> list[dict[str, Any]]:
    """Every registered block type: ``{slug, name, description, capabilities, secret_fields,
    plugin}``."""
    import plait.blocks as blocks

    return blocks.block_types()


def block_ls(type_slug: str | None = None, include_anonymous: bool = False) -> list[dict[str, Any]]:
    """Saved blocks: ``{name, slug, type_name, id, created, updated}``.

    Args:
        type_slug: Only blocks of this type.
        include_anonymous: Also blocks saved without a name (nested blocks saved inline).
    """
    from plait.cli import _source

    if _source.remote():
        return _source.block_ls(type_slug, include_anonymous)
    import plait.blocks as blocks

    if type_slug:
        blocks.get_block_class(type_slug)  # an unknown type is an error, not an empty list
    return blocks.list_documents(slug=type_slug or None, include_anonymous=include_anonymous)


def block_create(slug: str, name: str, values: dict[str, Any], overwrite: bool = False) -> dict[str, Any]:
    """Build a block of type ``slug`` from ``values`` and save it as ``name``.

    Returns:
        What ``block_inspect`` returns for it (secrets masked).

    Raises:
        plait.exceptions.BlockNotFound: No block type ``slug``.
        plait.exceptions.BlockValidationError: ``values`` do not make a valid block.
        plait.exceptions.BlockError: ``name`` is taken and ``overwrite`` is false.
    """
    from pydantic import ValidationError

    from plait.exceptions import BlockValidationError

    blocks = _blocks()
    cls = blocks.get_block_class(slug)
    if not name or not name.strip():
        raise ValueError("give the block a name")
    try:
        block = cls(**values)
    except ValidationError as exc:
        raise BlockValidationError(_validation_message(slug, exc)) from None
    block.save(name.strip(), overwrite=overwrite)
    return block_inspect(f"{slug}/{name.strip()}")


def block_inspect(reference: str, show_secrets: bool = False) -> dict[str, Any]:
    """One saved block: ``{name, slug, type_name, id, created, updated, capabilities,
    secret_fields, fields}``; secret field values are ``"***"`` unless ``show_secrets``.

    Args:
        reference: ``"slug/name"``, or the name alone when no other type uses it.
    """
    from plait.cli import _source

    if _source.remote() and not show_secrets:  # the masked document: a read key suffices
        return _source.block_inspect(reference)
    doc = _document(reference)
    block = doc.pop("block")
    cls = type(block)
    fields = _blocks().block_to_dict(block, reveal_secrets=show_secrets)
    if not show_secrets:
        # Belt and braces: whatever block_to_dict returns, no secret value leaves here.
        fields = json.loads(_scrub(json.dumps(fields, default=str), block))
    return {
        **doc,
        "capabilities": sorted(getattr(cls, "capabilities", ()) or ()),
        "secret_fields": cls.secret_fields(),
        "fields": fields,
    }


def _listing(reference: str) -> dict[str, Any]:
    """The listing entry of a saved block, without loading it (so a block whose type is not
    installed, or that cannot be decrypted or loaded, can still be deleted)."""
    from plait.blocks._load import describe_document

    return describe_document(reference.strip())


def block_delete(reference: str) -> dict[str, Any]:
    """Delete a saved block; returns ``{name, slug, id}`` of what was deleted."""
    doc = _listing(reference)
    _blocks().Block.delete(f"{doc['slug']}/{doc['name']}")
    return {"name": doc["name"], "slug": doc["slug"], "id": doc.get("id")}


def block_test(reference: str) -> dict[str, Any]:
    """Load a saved block and call its ``test_connection()``.

    Returns:
        ``{name, slug, ok: True}``.

    Raises:
        plait.exceptions.BlockError: The test failed (its reason, secrets replaced by
            ``***``), or the block type cannot test its connection.
    """
    from plait.exceptions import BlockError

    doc = _document(reference)
    block = doc["block"]
    test = getattr(block, "test_connection", None)
    label = f"{doc['slug']}/{doc['name']}"
    if not callable(test):
        raise BlockError(f"block {label} cannot test its connection: type {doc['slug']!r} has no test_connection()")
    try:
        test()
    except NotImplementedError:
        raise BlockError(
            f"block {label} cannot test its connection: type {doc['slug']!r} does not implement test_connection()"
        ) from None
    except Exception as exc:
        text = str(exc).strip()
        reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        raise BlockError(_scrub(f"{label}: {reason}", block)) from None
    return {"name": doc["name"], "slug": doc["slug"], "ok": True}


def block_apply(path: str | Path, dry_run: bool = False) -> list[dict[str, Any]]:
    """Create or update the blocks a blocks file describes.

    Returns:
        ``[{name, slug, action}]``, ``action`` being ``created``, ``updated`` or
        ``unchanged`` (what would happen, with ``dry_run``).
    """
    results = _blocks().apply_blocks_file(Path(path), dry_run=dry_run)
    return [{"name": r.name, "slug": r.slug, "action": r.action} for r in results]


# -- rendering ----------------------------------------------------------------------------------
def _show_types(rows: list[dict[str, Any]]) -> None:
    from plait.cli._output import EMPTY, Column, print_message, print_table

    if not rows:
        print_message("No block types registered (see `plait plugins ls`).")
        return
    print_table(
        [
            Column("Slug", no_wrap=True),
            Column("Name"),
            Column("Capabilities"),
            Column("Secret fields"),
            Column("Plugin", no_wrap=True),
            Column("Description", max_width=60),
        ],
        [
            [
                t["slug"],
                t.get("name") or EMPTY,
                ", ".join(t.get("capabilities") or []) or EMPTY,
                ", ".join(t.get("secret_fields") or []) or EMPTY,
                t.get("plugin") or EMPTY,
                t.get("description") or EMPTY,
            ]
            for t in rows
        ],
    )


def _show_documents(rows: list[dict[str, Any]]) -> None:
    from plait.cli._output import EMPTY, Column, fmt_time, print_message, print_table

    if not rows:
        print_message("No saved blocks. Create one with `plait block create SLUG NAME`.")
        return
    print_table(
        [Column("Name", no_wrap=True), Column("Type", no_wrap=True), Column("ID", no_wrap=True),
         Column("Updated", no_wrap=True)],
        [[r.get("name") or EMPTY, r["slug"], r.get("id") or EMPTY, fmt_time(r.get("updated"))] for r in rows],
    )


def _show_block(data: dict[str, Any]) -> None:
    from plait.cli._output import EMPTY, fmt_time, fmt_value, print_fields, print_heading, print_message

    print_fields(
        [
            ("Name", data.get("name") or EMPTY),
            ("Type", f"{data['slug']} ({data.get('type_name') or data['slug']})"),
            ("ID", data.get("id") or EMPTY),
            ("Capabilities", ", ".join(data.get("capabilities") or []) or EMPTY),
            ("Secret fields", ", ".join(data.get("secret_fields") or []) or EMPTY),
            ("Created", fmt_time(data.get("created"))),
            ("Updated", fmt_time(data.get("updated"))),
        ]
    )
    print_heading("Fields")
    fields = data.get("fields") or {}
    if fields:
        print_fields([(name, fmt_value(value)) for name, value in fields.items()])
    else:
        print_message("(none)")


def _show_apply(rows: list[dict[str, Any]], dry_run: bool) -> None:
    from plait.cli._output import Cell, Column, print_message, print_table

    if not rows:
        print_message("The file describes no blocks.")
        return
    styles = {"created": "green", "updated": "yellow", "unchanged": "bright_black"}
    print_table(
        [Column("Name", no_wrap=True), Column("Type", no_wrap=True), Column("Action", no_wrap=True)],
        [[r["name"], r["slug"], Cell(r["action"], styles.get(r["action"], ""))] for r in rows],
    )
    if dry_run:
        click.echo("")
        print_message("Dry run: nothing was saved.")


# -- commands -----------------------------------------------------------------------------------
@click.group("block", cls=PlaitGroup)
def block_group() -> None:
    """Block types and saved blocks (typed configuration with encrypted secrets)."""


@block_group.command("types")
@json_option
def block_types_cmd(as_json: bool) -> None:
    """List the block types plugins registered: slug, capabilities, secret fields."""
    from plait.cli._output import echo_json

    rows = block_types()
    if as_json:
        echo_json(rows)
    else:
        _show_types(rows)


@block_group.command("ls")
@click.option("--type", "type_slug", metavar="SLUG", help="Only blocks of this type.")
@click.option("--all", "include_anonymous", is_flag=True, help="Also list anonymous blocks (saved without a name).")
@json_option
def block_ls_cmd(type_slug: str | None, include_anonymous: bool, as_json: bool) -> None:
    """List saved blocks: name, type, id, last update."""
    from plait.cli._output import echo_json

    rows = block_ls(type_slug=type_slug, include_anonymous=include_anonymous)
    if as_json:
        echo_json(rows)
    else:
        _show_documents(rows)


def _prompt_values(slug: str) -> dict[str, Any]:
    """Ask for each field of ``slug`` (hidden input for secrets; empty skips optional ones)."""
    values: dict[str, Any] = {}
    for field in block_fields(slug):
        label = field["name"]
        if field["description"]:
            label += f" ({field['description']})"
        if not field["required"]:
            shown = "" if field["default"] in (None, "", [], {}) else f", default {fmt_default(field['default'])}"
            label += f" [optional{shown}]"
        while True:
            text = click.prompt(
                label,
                default=None if field["required"] else "",
                show_default=False,
                hide_input=field["secret"],
                err=True,
            )
            if text == "" and not field["required"]:
                break
            try:
                values[field["name"]] = parse_field_value(field, text)
            except Exception as exc:  # a nested block that does not exist: ask again
                click.echo(f"Error: {exc}", err=True)
                continue
            break
    return values


def fmt_default(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


@block_group.command("create")
@click.argument("slug", metavar="SLUG")
@click.argument("name", metavar="NAME")
@click.option("--set", "assignments", multiple=True, metavar="FIELD=VALUE",
              help="Set a field (repeatable); non-string values are JSON. Without --set, prompts for each field.")
@click.option("--overwrite", is_flag=True, help="Replace a saved block of the same type and name.")
@json_option
def block_create_cmd(slug: str, name: str, assignments: tuple[str, ...], overwrite: bool, as_json: bool) -> None:
    """Create a block of type SLUG and save it as NAME.

    With --set FIELD=VALUE the fields come from the command line; otherwise plait asks for
    each field (secret fields are typed without echo; an empty answer skips an optional
    field).
    """
    from plait.cli._output import echo_json

    values = parse_assignments(slug, assignments) if assignments else _prompt_values(slug)
    data = block_create(slug, name, values, overwrite=overwrite)
    if as_json:
        echo_json(data)
    else:
        click.echo(f"Saved block {data['slug']}/{data['name']}" + (f" ({data['id']})." if data.get("id") else "."))


@block_group.command("inspect")
@click.argument("name", metavar="NAME")
@json_option
@click.option("--show-secrets", is_flag=True, help="Reveal secret field values (masked as *** by default).")
def block_inspect_cmd(name: str, as_json: bool, show_secrets: bool) -> None:
    """Show a saved block: its type, capabilities and field values.

    NAME is SLUG/NAME, or the name alone when no other block type uses it.
    """
    from plait.cli._output import echo_json

    data = block_inspect(name, show_secrets=show_secrets)
    if as_json:
        echo_json(data)
    else:
        _show_block(data)


@block_group.command("delete")
@click.argument("name", metavar="NAME")
@click.option("--yes", "-y", "yes", is_flag=True, help="Do not ask for confirmation.")
def block_delete_cmd(name: str, yes: bool) -> None:
    """Delete a saved block. NAME is SLUG/NAME, or a name no other type uses."""
    if not yes:
        doc = _listing(name)
        click.confirm(f"Delete block {doc['slug']}/{doc['name']}?", abort=True, err=True)
    deleted = block_delete(name)
    click.echo(f"Deleted block {deleted['slug']}/{deleted['name']}.")


@block_group.command("test")
@click.argument("name", metavar="NAME")
def block_test_cmd(name: str) -> None:
    """Load a saved block and test its connection: prints "ok", or the reason and exits 1."""
    block_test(name)
    click.echo("ok")


@block_group.command("apply")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change without saving anything.")
@json_option
def block_apply_cmd(path: Path, dry_run: bool, as_json: bool) -> None:
    """Create or update the blocks described in FILE (blocks as code).

    Prints each block's name, type and action: created, updated or unchanged.
    """
    from plait.cli._output import echo_json

    rows = block_apply(path, dry_run=dry_run)
    if as_json:
        echo_json(rows)
    else:
        _show_apply(rows, dry_run)
