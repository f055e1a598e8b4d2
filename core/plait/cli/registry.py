"""``plait registry build | check | record-pass``: generate registry.json from the collections,
keep it current, and record the plait versions their tests passed on (tested_with.json).

``registry_build()`` and ``registry_check()`` are the plain functions behind the commands
(tests and scripts call those directly); the click commands only render what they return.
CI runs ``plait registry check``: it fails, naming the JSON paths that differ, when the
committed registry.json is not what ``plait registry build`` would write.
"""

from __future__ import annotations

from typing import Any

import click

from plait.cli._app import CliError, PlaitGroup, json_option

__all__ = ["registry_build", "registry_check", "registry_record_pass", "registry_group"]


def registry_build(root: str | None = None, output: str | None = None) -> dict[str, Any]:
    """Build registry.json for the checkout at ``root`` (found from the current directory
    when None) and write it to ``output`` (default ``<root>/registry.json``).

    Returns:
        ``{path, collections, blocks, tasks, flows, builtin_blocks, changed}``.
    """
    from plait.registry import build_registry

    return build_registry(root, output)


def registry_check(root: str | None = None) -> dict[str, Any]:
    """Compare the committed registry.json with a fresh in-memory build.

    Returns:
        ``{ok, path, differences: ["json.path: ..."], total, collections, message}``
        (at most 20 differences; ``total`` counts them all).
    """
    from plait.registry import check_registry

    return check_registry(root).as_dict()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@click.group("registry", cls=PlaitGroup)
def registry_group() -> None:
    """Build and check registry.json, the index of every collection."""


root_option = click.option(
    "--root", type=click.Path(file_okay=False, exists=True), metavar="PATH",
    help="The plait checkout (default: found from the current directory).",
)


@registry_group.command("build")
@root_option
@click.option("--output", "-o", type=click.Path(dir_okay=False), metavar="FILE",
              help="Where to write (default: registry.json at the root).")
@json_option
def registry_build_cmd(root: str | None, output: str | None, as_json: bool) -> None:
    """Generate registry.json from collections/*/pyproject.toml and their plugins.

    Imports each collection's plugin module (from its own directory, in a separate
    interpreter) to list its blocks, tasks, flows and storage schemes, so every
    collection must be importable: `pip install -e ./collections/<name>`. The output
    has no timestamps: building twice gives the same bytes.
    """
    from plait.cli._output import echo_json

    summary = registry_build(root, output)
    if as_json:
        echo_json(summary)
        return
    names = summary["collections"]
    verb = "Wrote" if summary["changed"] else "Unchanged:"
    click.echo(
        f"{verb} {summary['path']}: {_plural(len(names), 'collection')}"
        + (f" ({', '.join(names)})" if names else "")
        + f", {_plural(summary['blocks'], 'block')}, {_plural(summary['tasks'], 'task')}, "
        f"{_plural(summary['flows'], 'flow')}; {_plural(summary['builtin_blocks'], 'built-in block')}."
    )


@registry_group.command("check")
@root_option
@json_option
def registry_check_cmd(root: str | None, as_json: bool) -> None:
    """Fail when the committed registry.json differs from what `build` would write.

    Rebuilds in memory (importing the collections like `build`) and lists the JSON paths
    that differ (at most 20), e.g. `collections.plait-aws.version: registry.json has
    "0.1.0", source has "0.2.0"`. Exit code 1 when it is out of date.
    """
    from plait.cli._output import echo_json

    result = registry_check(root)
    if as_json:
        echo_json(result)
        if not result["ok"]:
            raise click.exceptions.Exit(1)
        return
    if result["ok"]:
        click.echo(result["message"])
        return
    if result["differences"]:
        click.echo("registry.json differs from the source:", err=True)
        for line in result["differences"]:
            click.echo(f"  {line}", err=True)
        if result["total"] > len(result["differences"]):
            click.echo(f"  ... and {result['total'] - len(result['differences'])} more", err=True)
    raise CliError(result["message"])


def registry_record_pass(names: list[str], plait_version: str | None = None, root: str | None = None,
                         all_collections: bool = False) -> list[dict[str, Any]]:
    """Record in tested_with.json that the tests of each collection in ``names`` (at its
    version in the checkout) passed on plait ``plait_version`` (default: the running plait).

    Returns:
        ``[{path, name, version, plait_version, tested_with, changed}]``.
    """
    from pathlib import Path

    from plait.registry import RegistryError, find_repo_root
    from plait.registry._build import _read_toml, collection_dirs
    from plait.registry._install import plait_version as running
    from plait.registry._tested import record_pass

    root_path = Path(root).resolve() if root else find_repo_root()
    versions = {d.name: str((_read_toml(d / "pyproject.toml").get("project") or {}).get("version"))
                for d in collection_dirs(root_path)}
    chosen = sorted(versions) if all_collections else names
    if not chosen:
        raise RegistryError("name the collections whose tests passed, or pass --all")
    results = []
    for name in chosen:
        key = name if name in versions else f"plait-{name}"
        if key not in versions:
            have = ", ".join(sorted(versions))
            raise RegistryError(f"no collection {name!r} in {root_path / 'collections'}; have: {have}")
        results.append(record_pass(root_path, key, plait_version or running(), versions[key]))
    return results


@registry_group.command("record-pass")
@click.argument("names", nargs=-1, metavar="[COLLECTION]...")
@click.option("--all", "all_collections", is_flag=True, help="Every collection of the checkout.")
@click.option("--plait-version", metavar="V", help="The plait version the tests ran on (default: this plait's).")
@root_option
@json_option
def registry_record_pass_cmd(names: tuple[str, ...], all_collections: bool, plait_version: str | None,
                             root: str | None, as_json: bool) -> None:
    """Record that COLLECTION's tests passed on a plait version (the compatibility matrix).

    Adds the version to tested_with.json at the root, under the collection's current
    version; `plait registry build` copies it into the entry's `tested_with`. Run it in CI
    after the collection's tests pass, then rebuild and commit registry.json.
    """
    from plait.cli._output import echo_json

    results = registry_record_pass(list(names), plait_version, root, all_collections)
    if as_json:
        echo_json(results)
        return
    for r in results:
        verb = "Recorded" if r["changed"] else "Already recorded:"
        click.echo(f"{verb} {r['name']} {r['version']} passed on plait {r['plait_version']} "
                   f"(tested with {', '.join(r['tested_with'])}).")
