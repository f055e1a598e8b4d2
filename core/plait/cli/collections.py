"""``plait collection ls | info | install``: browse registry.json and install collections.

``collection_ls``, ``collection_info`` and ``collection_install_plan`` are the plain
functions behind the commands (tests and scripts call those directly). Listing reads
registry.json and installed distribution metadata only: no plugin code is imported. The
registry is ``--registry PATH``, else ``$PLAIT_REGISTRY``, else the checkout's registry.json.
"""

from __future__ import annotations

import shlex
from typing import Any

import click

from plait.cli._app import CliError, PlaitGroup, json_option

__all__ = ["collection_ls", "collection_info", "collection_install_plan", "collection_group"]

STATUS_STYLES = {
    "installed": "green",
    "not installed": "bright_black",
    "outdated": "yellow",
    "incompatible": "red",
    "unlisted": "magenta",
}


def _load(registry: str | None) -> Any:
    from plait.registry import load_registry

    return load_registry(registry)


def collection_ls(registry: str | None = None) -> list[dict[str, Any]]:
    """Every registry collection with its install status, then installed plugins that the
    registry does not list.

    Returns:
        ``[{name, description, registry_version, installed_version, plait_range,
        installed_plait_range, status}]``; status is "installed", "not installed",
        "outdated", "incompatible" (the installed one excludes this plait) or "unlisted".
    """
    from plait.registry import collection_statuses

    return collection_statuses(_load(registry))


def collection_info(name: str, registry: str | None = None) -> dict[str, Any]:
    """The registry entry of collection ``name`` (``plait-aws`` or ``aws``) plus its status.

    Raises:
        plait.registry.RegistryError: No such collection (close matches suggested).
    """
    from plait.registry import collection_status, find_collection

    entry = find_collection(_load(registry), name)
    return {**entry.model_dump(mode="json"), "installed": collection_status(entry)}


def collection_install_plan(name: str, registry: str | None = None, editable: bool = False) -> dict[str, Any]:
    """The pip command that installs ``name``; refuses a collection that excludes this plait.

    Returns:
        ``{name, version, command: [argv], source: "path" | "index", note}``.
    """
    from plait.registry import install_plan

    return install_plan(_load(registry), name, editable=editable)


# -- rendering ------------------------------------------------------------------------------------
def show_collections(rows: list[dict[str, Any]]) -> None:
    from plait.cli._output import EMPTY, Cell, Column, print_message, print_table

    if not rows:
        print_message("No collections in the registry and no plait plugins installed.")
        return
    print_table(
        [
            Column("Name", no_wrap=True),
            Column("Registry", no_wrap=True),
            Column("Installed", no_wrap=True),
            Column("Status", no_wrap=True),
            Column("Plait", no_wrap=True),
            Column("Description"),
        ],
        [
            [
                r["name"],
                r["registry_version"] or EMPTY,
                r["installed_version"] or EMPTY,
                Cell(r["status"], STATUS_STYLES.get(r["status"], "")),
                r["plait_range"] or r["installed_plait_range"] or EMPTY,
                r["description"] or EMPTY,
            ]
            for r in rows
        ],
    )


def show_collection(info: dict[str, Any]) -> None:
    from plait.cli._output import EMPTY, Cell, Column, print_fields, print_heading, print_table

    status = info["installed"]
    installed = status["status"] + (f" ({status['installed_version']})" if status["installed_version"] else "")
    print_fields([
        ("Name", info["name"]),
        ("Version", info["version"]),
        ("Description", info["description"] or EMPTY),
        ("Status", Cell(installed, STATUS_STYLES.get(status["status"], ""))),
        ("Plait", info["plait_range"]),
        ("Python", info["requires_python"] or "any"),
        ("Dependencies", ", ".join(info["dependencies"]) or EMPTY),
        ("Install", f"plait collection install {info['name']}   (or: pip install {info['install']['pip']})"),
        ("Docs", info["docs"] or EMPTY),
    ])
    blocks = info["blocks"]
    print_heading(f"Blocks ({len(blocks)})")
    if blocks:
        print_table(
            [Column("Slug", no_wrap=True), Column("Name", no_wrap=True), Column("Capabilities"),
             Column("Secret fields"), Column("Import", no_wrap=True)],
            [[b["slug"], b["name"], ", ".join(b["capabilities"]) or EMPTY,
              ", ".join(b["secret_fields"]) or EMPTY, b["import_path"]] for b in blocks],
        )
    for kind in ("tasks", "flows"):
        entries = info[kind]
        if kind == "tasks" or entries:
            print_heading(f"{kind.title()} ({len(entries)})")
        if entries:
            print_table(
                [Column("Name", no_wrap=True), Column("Import", no_wrap=True), Column("Signature"),
                 Column("Description")],
                [[e["name"], e["import_path"], e["signature"], e["description"] or EMPTY] for e in entries],
            )
    if info["storage_schemes"]:
        print_heading("Storage schemes")
        click.echo(", ".join(f"{scheme}://" for scheme in info["storage_schemes"]))
    if info["infrastructure"]:
        print_heading("Infrastructure")
        print_table([Column("Kind", no_wrap=True), Column("Block")],
                    [[i["kind"], i["block"]] for i in info["infrastructure"]])
    examples = [(b["name"], b["code_example"]) for b in blocks if b["code_example"]]
    examples += [(e["name"], e["example"]) for kind in ("tasks", "flows") for e in info[kind] if e["example"]]
    if examples:
        print_heading("Examples")
        for title, code in examples:
            click.echo(f"# {title}")
            click.echo(code)
            click.echo("")


# -- commands -------------------------------------------------------------------------------------
@click.group("collection", cls=PlaitGroup)
def collection_group() -> None:
    """Browse the collections in registry.json and install them."""


registry_option = click.option(
    "--registry", type=click.Path(dir_okay=True), metavar="PATH",
    help="registry.json to read (default: $PLAIT_REGISTRY, else the checkout's registry.json).",
)


@collection_group.command("ls")
@registry_option
@json_option
def collection_ls_cmd(registry: str | None, as_json: bool) -> None:
    """List collections: registry version, installed version and status.

    Status is "installed", "not installed", "outdated" (older than the registry's),
    "incompatible" (the installed version does not support this plait) or "unlisted" (an
    installed plait plugin the registry does not know). No plugin code is imported.
    """
    from plait.cli._output import echo_json

    rows = collection_ls(registry)
    if as_json:
        echo_json(rows)
    else:
        show_collections(rows)


@collection_group.command("info")
@click.argument("name")
@registry_option
@json_option
def collection_info_cmd(name: str, registry: str | None, as_json: bool) -> None:
    """Show one collection: versions, install command, blocks, tasks, flows, examples."""
    from plait.cli._output import echo_json

    info = collection_info(name, registry)
    if as_json:
        echo_json(info)
    else:
        show_collection(info)


@collection_group.command("install")
@click.argument("name")
@registry_option
@click.option("--dry-run", is_flag=True, help="Print the pip command instead of running it.")
@click.option("--editable", "-e", is_flag=True, help="Install the collection's source in editable mode.")
def collection_install_cmd(name: str, registry: str | None, dry_run: bool, editable: bool) -> None:
    """Install a collection with pip (into the Python running plait).

    Refuses a collection whose plait range excludes the installed plait. Installs from
    the collection's directory next to registry.json, or, when that is absent, the
    pinned version from the package index.
    """
    from plait.registry._install import run_command

    plan = collection_install_plan(name, registry, editable=editable)
    command = shlex.join(plan["command"])
    if plan["note"]:
        click.echo(plan["note"])
    if dry_run:
        click.echo(f"Would run: {command}")
        return
    click.echo(f"Running: {command}")
    code = run_command(plan["command"], click.echo)
    if code != 0:
        raise CliError(f"pip install {plan['name']} failed with exit code {code}; see pip's output above")
    click.echo(f"Installed {plan['name']} {plan['version']}.")
