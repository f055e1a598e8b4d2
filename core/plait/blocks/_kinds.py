"""Base classes for the kinds of block plait itself knows how to use.

A plugin's block subclasses one of these to be usable as result storage, to run flows, to
deliver notifications, or to test credentials. Each kind is a capability plus the methods
that capability promises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from plait.blocks._base import Block

__all__ = [
    "CredentialsBlock",
    "StorageBlock",
    "InfrastructureBlock",
    "InfrastructureResult",
    "NotificationBlock",
]


class CredentialsBlock(Block):
    """Credentials for a service; ``test_connection()`` proves they work."""

    capabilities: ClassVar[tuple[str, ...]] = ("credentials",)

    def test_connection(self) -> None:
        """Connect once; return None on success, raise an error explaining the failure."""
        raise NotImplementedError(f"{self.block_type_slug} does not implement test_connection()")


class StorageBlock(Block):
    """Reads and writes bytes at paths; usable as ``result_storage`` and for a URL scheme."""

    capabilities: ClassVar[tuple[str, ...]] = ("read-path", "write-path")

    @property
    def uri(self) -> str:
        """A URL that resolves back to this storage (``file:///...``, ``s3://bucket/prefix``)."""
        raise NotImplementedError

    def read_path(self, path: str) -> bytes:
        """The bytes at ``path``; FileNotFoundError when there are none."""
        raise NotImplementedError

    def write_path(self, path: str, content: bytes) -> Any:
        """Write ``content`` at ``path``, replacing what was there."""
        raise NotImplementedError


@dataclass
class InfrastructureResult:
    """How a flow run on some infrastructure ended."""

    flow_run_id: str
    state_type: str
    exit_code: int | None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state_type == "COMPLETED"


class InfrastructureBlock(Block):
    """Runs a flow run somewhere (a subprocess, a container, a cluster)."""

    capabilities: ClassVar[tuple[str, ...]] = ("run-infrastructure",)

    def run(
        self, entrypoint: str, parameters: dict[str, Any] | None = None, *, flow_run_id: str | None = None
    ) -> InfrastructureResult:
        """Run the flow at ``entrypoint`` (``path/to/file.py:flow_name``) with ``parameters``;
        ``flow_run_id`` names the run when it exists already (a worker's claimed run)."""
        raise NotImplementedError


class NotificationBlock(Block):
    """Delivers a message (webhook, chat, email); used by notification rules."""

    capabilities: ClassVar[tuple[str, ...]] = ("notify",)

    def notify(self, subject: str, body: str) -> None:
        """Deliver one message; raise on failure (the caller logs and carries on)."""
        raise NotImplementedError
