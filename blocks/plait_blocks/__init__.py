"""plait's built-in blocks: local storage, secrets, JSON values, webhooks, Slack, email, processes.

They are a plugin like any collection: ``plait_blocks.plugin`` is registered under the
``plait.plugins`` entry point and uses only plait's public API.

    from plait_blocks import LocalFileSystem, Secret, Webhook

    LocalFileSystem(basepath="/data/results").save("results")
    Webhook(url="https://hooks.example.com/T0K3N").save("ops")
"""

from plait import __version__ as _plait_version
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
