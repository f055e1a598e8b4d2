"""Finding plugins from installed metadata, without importing any of them.

A plugin is an entry point of the group ``plait.plugins`` (name -> module). What it provides
is declared in five more entry-point groups of its distribution, each entry naming the
plugin module as its value:

    [project.entry-points."plait.block_types"]       # slug = module
    [project.entry-points."plait.storage_schemes"]   # scheme = module
    [project.entry-points."plait.infrastructure"]    # kind = module
    [project.entry-points."plait.task_runners"]      # runner name = module
    [project.entry-points."plait.hooks"]             # hook name = module

so plait can import a plugin only when one of these is needed. A declaration whose value
carries extras (``"plait_dbt.plugin [snowflake]"``) is optional: the plugin registers it
only when that extra is installed. A plugin that declares nothing is imported eagerly, on
the first use of plugins. Compatibility (the plugin's ``Requires-Dist: plait...``) is
decided here too, before anything is imported.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plait.hookspecs import REGISTRATION_HOOKS, RUNTIME_HOOKS

if TYPE_CHECKING:
    from importlib import metadata

__all__ = [
    "ENTRY_POINT_GROUP",
    "DECLARATION_GROUPS",
    "DEFAULT_PLUGINS",
    "Declared",
    "Candidate",
    "Problem",
    "discover",
    "plait_version",
    "compatible",
]

ENTRY_POINT_GROUP = "plait.plugins"
#: entry-point group -> the attribute of ``Declared`` it fills
DECLARATION_GROUPS = {
    "plait.block_types": "block_types",
    "plait.storage_schemes": "storage_schemes",
    "plait.infrastructure": "infrastructure",
    "plait.task_runners": "task_runners",
    "plait.hooks": "hooks",
}
#: Plugins that are always loaded, whatever PLAIT_PLUGINS says, by module name (never by an
#: import statement: the core does not name plugin packages in its imports).
DEFAULT_PLUGINS: dict[str, str] = {"plait_blocks": "plait_blocks.plugin"}
# What a declared kind implies about the registration hook the plugin implements.
_IMPLIED_HOOKS = {
    "block_types": "plait_register_blocks",
    "storage_schemes": "plait_register_storage",
    "infrastructure": "plait_register_infrastructure",
    "task_runners": "plait_register_task_runners",
}
KNOWN_HOOKS = frozenset(REGISTRATION_HOOKS) | frozenset(RUNTIME_HOOKS)


@dataclass
class Declared:
    """What a plugin's metadata says it provides; each maps a name to "optional"."""

    block_types: dict[str, bool] = field(default_factory=dict)
    storage_schemes: dict[str, bool] = field(default_factory=dict)
    infrastructure: dict[str, bool] = field(default_factory=dict)
    task_runners: dict[str, bool] = field(default_factory=dict)
    hooks: dict[str, bool] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.block_types or self.storage_schemes or self.infrastructure or self.task_runners
                    or self.hooks)

    def hook_names(self) -> set[str]:
        """The hooks the plugin implements by its declarations (listed, or implied by a kind)."""
        names = set(self.hooks)
        for kind, hook in _IMPLIED_HOOKS.items():
            if getattr(self, kind):
                names.add(hook)
        return names

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "block_types": sorted(self.block_types),
            "storage_schemes": sorted(self.storage_schemes),
            "infrastructure": sorted(self.infrastructure),
            "task_runners": sorted(self.task_runners),
            "hooks": sorted(self.hooks),
        }


@dataclass
class Candidate:
    """A discovered plugin, not imported yet."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    requires_plait: str | None
    default: bool = False
    declared: Declared = field(default_factory=Declared)
    object: Any = None  # a module handed to register_plugin() (no metadata, nothing to import)


@dataclass(frozen=True)
class Problem:
    """Something wrong found in the metadata: becomes a Diagnosis."""

    plugin: str
    version: str | None
    reason: str
    fix: str


@functools.cache
def plait_version() -> str:
    """The installed plait distribution's version (what plugins' ranges are checked against)."""
    from importlib import metadata

    try:
        return metadata.version("plait")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0"


def requirement_on_plait(dist: metadata.Distribution | None) -> str | None:
    """The plait range in a distribution's ``Requires-Dist`` (None when it names none)."""
    if dist is None:
        return None
    from packaging.requirements import InvalidRequirement, Requirement

    for line in dist.requires or ():
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.name.lower() == "plait" and not req.marker:
            return str(req.specifier) or None
    return None


def compatible(spec: str | None) -> bool:
    """Whether the installed plait satisfies ``spec`` (raises InvalidSpecifier when unreadable)."""
    if not spec:
        return True
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(spec).contains(plait_version(), prereleases=True)


def _dist_name(dist: metadata.Distribution | None) -> str | None:
    return dist.metadata["Name"] if dist is not None else None


def _plait_dist() -> metadata.Distribution | None:
    from importlib import metadata

    try:
        return metadata.distribution("plait")
    except metadata.PackageNotFoundError:
        return None


def discover(
    selected: set[str] | None, extra: dict[str, Any]
) -> tuple[list[Candidate], list[Candidate], list[Problem]]:
    """Read the installed metadata: the plugins to use, those ``PLAIT_PLUGINS`` excludes or
    that cannot work with this plait, and the problems found.

    Args:
        selected: The names PLAIT_PLUGINS lists (None: every plugin). Default plugins are
            always used.
        extra: Modules added with ``register_plugin(name, module)``.

    Returns:
        ``(usable, unusable, problems)``: usable candidates in load order (default plugins
        first, then by name); unusable ones (incompatible) are listed by ``plait plugins ls``.
    """
    from importlib import metadata  # imported here: discovery runs on first use, not at import

    everything = metadata.entry_points()
    problems: list[Problem] = []
    by_module: dict[str, Candidate] = {}
    usable: list[Candidate] = []
    unusable: list[Candidate] = []
    plugin_modules = set(DEFAULT_PLUGINS.values())

    def add(candidate: Candidate, dist: metadata.Distribution | None) -> None:
        if candidate.default:
            usable.append(candidate)
            by_module.setdefault(candidate.module, candidate)
            return
        try:
            if dist is not None:
                candidate.requires_plait = requirement_on_plait(dist)
            ok = compatible(candidate.requires_plait)
        except Exception as exc:  # an unreadable range in someone's metadata
            problems.append(Problem(candidate.name, candidate.version, f"declares an unreadable plait range ({exc})",
                                    f"fix the metadata of {candidate.distribution or candidate.name}"))
            unusable.append(candidate)
            return
        if not ok:
            problems.append(Problem(
                candidate.name, candidate.version,
                f"supports plait{candidate.requires_plait}, but plait {plait_version()} is installed",
                f"install a version of {candidate.distribution or candidate.name} that supports "
                f"plait {plait_version()}",
            ))
            unusable.append(candidate)
            return
        usable.append(candidate)
        by_module.setdefault(candidate.module, candidate)

    plugin_eps = sorted(everything.select(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    plugin_modules |= {ep.module for ep in plugin_eps}
    defaults_seen: set[str] = set()
    for name, module in DEFAULT_PLUGINS.items():
        # the plait distribution also names its default plugin as an entry point (for tools that
        # read metadata, like the registry builder); it is loaded once, as a default, by module
        ep = next((e for e in plugin_eps if e.module == module), None)
        dist = getattr(ep, "dist", None) if ep is not None else _plait_dist()
        add(Candidate(name, module, _dist_name(dist) or "plait", plait_version(), None, default=True), dist)
        defaults_seen.add(module)
    seen_names = set(DEFAULT_PLUGINS)
    for ep in plugin_eps:
        if ep.module in defaults_seen:
            continue
        if selected is not None and ep.name not in selected:
            continue
        dist = getattr(ep, "dist", None)
        if ep.name in seen_names:
            problems.append(Problem(ep.name, dist.version if dist else None,
                                    f"two installed distributions name a plugin {ep.name!r}",
                                    "uninstall one of them; the first found is used"))
            continue
        seen_names.add(ep.name)
        add(Candidate(ep.name, ep.module, _dist_name(dist), dist.version if dist else None, None), dist)
    for name in sorted(extra):
        if (selected is None or name in selected) and name not in seen_names:
            module = extra[name]
            seen_names.add(name)
            label = getattr(module, "__name__", None) or type(module).__qualname__
            add(Candidate(name, str(label), None, None,
                          getattr(module, "PLAIT_REQUIRES", None), object=module), None)

    for group, kind in DECLARATION_GROUPS.items():
        for ep in sorted(everything.select(group=group), key=lambda e: (e.module, e.name)):
            owner = by_module.get(ep.module)
            if owner is None:
                if ep.module not in plugin_modules:
                    dist = getattr(ep, "dist", None)
                    problems.append(Problem(
                        _dist_name(dist) or ep.module, dist.version if dist else None,
                        f"declares {ep.name!r} in {group} for module {ep.module}, which no "
                        f"{ENTRY_POINT_GROUP} entry point names",
                        f'add {ep.module.rsplit(".", 1)[-1]} = "{ep.module}" to '
                        f'[project.entry-points."{ENTRY_POINT_GROUP}"] '
                        "or remove the declaration",
                    ))
                continue  # the plugin is excluded or incompatible: its declarations do not count
            if kind == "hooks" and ep.name not in KNOWN_HOOKS:
                problems.append(Problem(owner.name, owner.version,
                                        f"declares {ep.name!r} in plait.hooks, which is not a plait hook",
                                        f"use one of: {', '.join(sorted(KNOWN_HOOKS))}"))
                continue
            getattr(owner.declared, kind)[ep.name] = bool(ep.extras)
    return usable, unusable, problems
