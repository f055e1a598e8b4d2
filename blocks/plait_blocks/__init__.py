"""plait's built-in blocks: local storage, secrets, JSON values, webhooks, Slack, email, processes.

They are a plugin like any collection: ``plait_blocks.plugin`` is registered under the
``plait.plugins`` entry point and uses only plait's public API.

    from plait_blocks import LocalFileSystem, Secret, Webhook

    LocalFileSystem(basepath="/data/results").save("results")
    Webhook(url="https://hooks.example.com/T0K3N").save("ops")
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from plait import __version__ as _plait_version

if TYPE_CHECKING:
    from plait_blocks.notifications import (
        DeliveryError,
        Email,
        SlackWebhook,
        Webhook,
        deliver_event,
        render_event,
    )
    from plait_blocks.plugin import wait_for_deliveries
    from plait_blocks.process import Process
    from plait_blocks.storage import LocalFileSystem, local_file_system_from_url
    from plait_blocks.values import JSON, Secret

__version__ = _plait_version  # the built-ins ship inside the plait distribution

# Each name from the module that defines it, on first use: plait imports the plugin module
# in every process that records a flow run, and most of them never touch a block class.
_HOMES = {
    "DeliveryError": "notifications", "Email": "notifications", "SlackWebhook": "notifications",
    "Webhook": "notifications", "deliver_event": "notifications", "render_event": "notifications",
    "wait_for_deliveries": "plugin", "Process": "process", "LocalFileSystem": "storage",
    "local_file_system_from_url": "storage", "JSON": "values", "Secret": "values",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'plait_blocks' has no attribute {name!r}")
    value = getattr(import_module(f"plait_blocks.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DeliveryError",
    "Email",
    "JSON",
    "LocalFileSystem",
    "Process",
    "Secret",
    "SlackWebhook",
    "Webhook",
    "__version__",
    "deliver_event",
    "local_file_system_from_url",
    "render_event",
    "wait_for_deliveries",
]
