"""``DbtNodeTranslator``: how dbt nodes become plait task runs. Subclass it to customise.

Every dbt node a command executes (model, seed, snapshot, test, ...) is recorded as its
own task run. The translator decides, per node, whether it is recorded, the task name, the
tags and the description:

    from plait_dbt import DbtNodeTranslator, dbt_run

    class ShortNames(DbtNodeTranslator):
        def task_name(self, node):
            return f"{node.resource_type}:{node.name}"

        def tags(self, node):
            return [*super().tags(node), f"owner:{node.meta.get('owner', 'data')}"]

    dbt_run("build", project_dir="jaffle", profile=profile, translator=ShortNames(record_tests=False))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DbtNode", "DbtNodeTranslator"]


@dataclass(frozen=True)
class DbtNode:
    """One node of dbt's manifest, as the translator sees it.

    Attributes:
        unique_id: dbt's id, e.g. ``"model.jaffle.orders"``.
        name: The node's name, e.g. ``"orders"``.
        resource_type: ``"model"``, ``"seed"``, ``"snapshot"``, ``"test"``, ``"unit_test"``...
        package_name: The dbt package that defines it.
        original_file_path: Its file, relative to the project.
        tags: dbt tags of the node.
        depends_on: unique_ids of the nodes and sources it reads from (the manifest's
            ``depends_on.nodes``).
        description: Its description in the project's YAML ("" if none).
        meta: Its ``meta`` config.
        props: The whole manifest entry, for anything else.
    """

    unique_id: str
    name: str
    resource_type: str
    package_name: str = ""
    original_file_path: str = ""
    tags: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    props: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_manifest(cls, unique_id: str, props: dict[str, Any] | None) -> DbtNode:
        """Build from a manifest.json entry (``manifest["nodes"][unique_id]``); a node the
        manifest does not know gets what its unique_id tells."""
        if not props:
            parts = unique_id.split(".")
            return cls(unique_id=unique_id, name=parts[2] if len(parts) > 2 else unique_id,
                       resource_type=parts[0], package_name=parts[1] if len(parts) > 1 else "")
        config = props.get("config") or {}
        return cls(
            unique_id=unique_id,
            name=str(props.get("name") or unique_id),
            resource_type=str(props.get("resource_type") or unique_id.split(".")[0]),
            package_name=str(props.get("package_name") or ""),
            original_file_path=str(props.get("original_file_path") or ""),
            tags=tuple(props.get("tags") or ()),
            depends_on=tuple((props.get("depends_on") or {}).get("nodes") or ()),
            description=str(props.get("description") or ""),
            meta=dict(config.get("meta") or props.get("meta") or {}),
            props=props,
        )


class DbtNodeTranslator:
    """Maps dbt nodes to plait task runs; the extension point of plait-dbt.

    Override any method; each receives a ``DbtNode``.

    Args:
        record_tests: Record data tests and unit tests as task runs too. With False, tests
            that pass are left out; a test that fails or errors is recorded anyway, since it
            explains the failure and the nodes dbt skipped after it.
    """

    def __init__(self, record_tests: bool = True) -> None:
        self.record_tests = record_tests

    def should_record(self, node: DbtNode) -> bool:
        """Whether the node becomes a task run (nodes that failed are recorded regardless)."""
        if node.resource_type in ("test", "unit_test"):
            return self.record_tests
        return True

    def task_name(self, node: DbtNode) -> str:
        """The task name of the node's run; default: its short name (``stg_orders``,
        ``not_null_stg_orders_order_id``). The unique_id is always kept: it is the run's
        name and its ``unique_id`` parameter."""
        return node.name

    def tags(self, node: DbtNode) -> list[str]:
        """Tags of the node's run; default: ``dbt``, ``dbt:<resource type>`` and
        ``dbt-tag:<tag>`` for each dbt tag."""
        return ["dbt", f"dbt:{node.resource_type}", *(f"dbt-tag:{tag}" for tag in node.tags)]

    def description(self, node: DbtNode) -> str | None:
        """The description of the node's task; default: the node's own, or its file."""
        return node.description or (f"dbt {node.resource_type} {node.original_file_path}".strip())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(record_tests={self.record_tests})"
