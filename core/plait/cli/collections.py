"""``plait collection ls | info | install | build | new``: browse registry.json, build and install collections.

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

__all__ = ["collection_ls", "collection_info", "collection_install_plan", "collection_build", "collection_group"]

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


def collection_install_plan(
    name: str,
    registry: str | None = None,
    editable: bool = False,
    *,
    find_links: str | None = None,
    index_url: str | None = None,
    no_index: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """What ``plait collection install`` runs for ``name`` (``plait-dbt[duckdb]==0.1.0``),
    after its checks (plait range, extras, sha256, editable installs, downgrades).

    With ``find_links`` or ``index_url`` a missing registry is not an error (the wheel's own
    metadata is checked).

    Returns:
        ``{name, version, extras, command: [argv], source: "wheelhouse" | "index" | "path",
        note, artifact, sha256, download, installed_before, editable_before}``.
    """
    from plait.registry import RegistryError, install_plan

    try:
        loaded = _load(registry)
    except RegistryError:
        if registry is not None or not (find_links or index_url):
            raise
        loaded = None
    return install_plan(loaded, name, editable=editable, find_links=find_links, index_url=index_url,
                        no_index=no_index, force=force)


def collection_build(out: str | None = None, root: str | None = None, include_plait: bool = True) -> dict[str, Any]:
    """Build sdists and wheels of plait and every collection into ``out`` (default
    ``<root>/wheelhouse``) and write ``out/index.json`` (file names and sha256).

    Returns:
        ``{path, index, artifacts: [{file, kind, name, version, sha256}], seconds}``.
    """
    import time
    from pathlib import Path

    from plait.registry import find_repo_root
    from plait.registry._wheelhouse import build_wheelhouse

    root_path = Path(root).resolve() if root else find_repo_root()
    target = Path(out).resolve() if out else root_path / "wheelhouse"
    started = time.monotonic()
    summary = build_wheelhouse(root_path, target, include_plait=include_plait)
    return {**summary, "seconds": round(time.monotonic() - started, 2)}


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
        ("Extras", ", ".join(info.get("extras") or {}) or EMPTY),
        ("Install", f"plait collection install {info['name']}   (or: pip install {info['install']['pip']})"),
        ("Wheel", ", ".join(f"{a['file']} sha256:{a['sha256']}" for a in info.get("artifacts", [])
                            if a["kind"] == "wheel") or EMPTY),
        ("Tested with", ", ".join(f"plait {v}" for v in info.get("tested_with", [])) or EMPTY),
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
@click.argument("name", metavar="NAME[EXTRA]==VERSION")
@registry_option
@click.option("--find-links", "-f", metavar="DIR", type=click.Path(file_okay=False, exists=True),
              help="Install from this wheelhouse (`plait collection build --out DIR`), verified by its index.json.")
@click.option("--index-url", "-i", metavar="URL",
              help="Download the wheel from this package index; verified by the registry's sha256.")
@click.option("--no-index", is_flag=True, help="Pass --no-index to pip: dependencies come from --find-links only.")
@click.option("--force", is_flag=True, help="Replace an editable install, or downgrade.")
@click.option("--dry-run", is_flag=True, help="Print the pip command instead of running it.")
@click.option("--editable", "-e", is_flag=True, help="Install the collection's source in editable mode.")
def collection_install_cmd(name: str, registry: str | None, find_links: str | None, index_url: str | None,
                           no_index: bool, force: bool, dry_run: bool, editable: bool) -> None:
    """Install a collection with pip (into the Python running plait): `plait-aws`,
    `plait-dbt[duckdb]==0.1.0`.

    Refuses a version whose plait range excludes the installed plait, an unknown extra, an
    artifact whose sha256 is not the recorded one, and replacing an editable install or
    downgrading unless --force. Without --find-links or --index-url it installs the
    collection's directory next to registry.json, or, when that is absent, the pinned
    version from the package index. Says what pip did: installed, upgraded, already installed.
    """
    from plait.registry._install import install_outcome, run_command

    plan = collection_install_plan(name, registry, editable=editable, find_links=find_links,
                                   index_url=index_url, no_index=no_index, force=force)
    if plan["note"]:
        click.echo(plan["note"])
    if dry_run:
        if plan["download"]:
            click.echo(f"Would run: {shlex.join(plan['download'])} -d TMP   (then verify sha256 {plan['sha256']})")
        click.echo(f"Would run: {shlex.join(plan['command'])}")
        return
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        click.echo(line)

    import tempfile

    with tempfile.TemporaryDirectory(prefix="plait-install-") as tmp:
        command = _downloaded(plan, tmp, echo) if plan["download"] else plan["command"]
        click.echo(f"Running: {shlex.join(command)}")
        code = run_command(command, echo)
    if code != 0:
        raise CliError(f"pip install {plan['name']} failed with exit code {code}; see pip's output above")
    outcome = install_outcome(plan["name"], plan["installed_before"], plan["editable_before"], lines)
    click.echo(outcome["message"])


def _downloaded(plan: dict[str, Any], tmp: str, echo: Any) -> list[str]:
    """Download the wheel into ``tmp``, verify its sha256, and return the install command for it."""
    from pathlib import Path

    from plait.registry._install import run_command
    from plait.registry._wheelhouse import sha256_of

    download = [*plan["download"], "-d", tmp]
    click.echo(f"Running: {shlex.join(download)}")
    if run_command(download, echo) != 0:
        raise CliError(f"downloading {plan['name']} {plan['version']} failed; see pip's output above")
    wheels = sorted(Path(tmp).glob("*.whl"))
    if not wheels:
        raise CliError(f"the index has no wheel of {plan['name']} {plan['version']}")
    actual = sha256_of(wheels[0])
    if wheels[0].name != plan["artifact"] or actual != plan["sha256"]:
        raise CliError(
            f"refusing to install {wheels[0].name}: sha256 {actual}, but the registry records "
            f"{plan['artifact']} with sha256 {plan['sha256']}"
        )
    return [part.replace("{wheel}", str(wheels[0])) for part in plan["command"]]


@collection_group.command("build")
@click.option("--out", "-o", metavar="DIR", type=click.Path(file_okay=False),
              help="The wheelhouse directory (default: wheelhouse/ at the root of the checkout).")
@click.option("--root", type=click.Path(file_okay=False, exists=True), metavar="PATH",
              help="The plait checkout (default: found from the current directory).")
@click.option("--no-plait", is_flag=True, help="Build the collections only, not plait itself.")
@json_option
def collection_build_cmd(out: str | None, root: str | None, no_plait: bool, as_json: bool) -> None:
    """Build sdists and wheels of plait and every collection into a wheelhouse.

    Uses each project's own build backend (hatchling), installed in this Python: nothing
    is downloaded. Writes DIR/index.json with every artifact's file name and sha256, which
    `plait collection install --find-links DIR` verifies. Wheels are reproducible: the
    same source gives the same bytes (and the sha256 registry.json records).
    """
    from plait.cli._output import echo_json

    summary = collection_build(out, root, include_plait=not no_plait)
    if as_json:
        echo_json(summary)
        return
    for artifact in summary["artifacts"]:
        click.echo(f"{artifact['file']}  sha256:{artifact['sha256']}")
    click.echo(f"Built {len(summary['artifacts'])} artifacts into {summary['path']} in {summary['seconds']}s; "
               f"index: {summary['index']}")


@collection_group.command("new")
@click.argument("name", metavar="plait-NAME")
@click.option("--dir", "directory", metavar="DIR", type=click.Path(file_okay=False),
              help="Where to create it (default: the checkout's collections/, else the current directory).")
@click.option("--no-check", is_flag=True, help="Skip describing it as `plait registry build` would.")
@json_option
def collection_new_cmd(name: str, directory: str | None, no_check: bool, as_json: bool) -> None:
    """Create a new collection: pyproject (own version, plait range, plait.plugins entry
    point), a package with a credentials block, a task and the plugin, README, CHANGELOG,
    a docs page and a CollectionSuite test. It passes its own tests as generated, once
    installed (`pip install -e DIR/plait-NAME`).
    """
    from plait.cli._output import echo_json

    summary = collection_new(name, directory, check=not no_check)
    if as_json:
        echo_json(summary)
        return
    click.echo(f"Created {summary['path']} ({len(summary['files'])} files) and {summary['docs']}.")
    if summary["entry"] is not None:
        entry = summary["entry"]
        click.echo(f"Registry check: {entry['name']} {entry['version']}, plait{entry['plait_range']}, "
                   f"blocks {', '.join(b['slug'] for b in entry['blocks'])}, tasks "
                   f"{', '.join(t['name'] for t in entry['tasks'])}.")
    click.echo("Next: pip install -e '" + summary["path"] + "[test]', run its tests, link its docs page from "
               "docs/collections/index.md, then `plait registry build`.")


def collection_new(name: str, directory: str | None = None, check: bool = True) -> dict[str, Any]:
    """Scaffold collection ``name``; with ``check``, describe it as the registry build would.

    Returns:
        ``{path, docs, files, package, plait_range, checkout, entry}`` (``entry``: the
        registry entry, or None without ``check``).
    """
    from plait.registry._build import describe_collection
    from plait.registry._scaffold import scaffold_collection

    summary = scaffold_collection(name, directory)
    summary["entry"] = describe_collection(summary["path"]) if check else None
    return summary
