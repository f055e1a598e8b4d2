"""What ``PlaitClient`` and ``AsyncPlaitClient`` share beyond the ``plait._api`` core."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plait._api import ApiConfig

if TYPE_CHECKING:
    from plait.blocks import Block

__all__ = ["client_config", "block_body"]


def client_config(url: str | None, api_key: str | None, timeout: float | None) -> ApiConfig:
    """The server a client talks to: the arguments given, the settings for the rest.

    Raises:
        ApiConfigError: No URL given and PLAIT_API_URL is not set (or not an http(s) URL).
    """
    if url is not None and api_key is not None and timeout is not None:
        return ApiConfig(url, api_key, timeout)
    from plait.settings import get_settings

    settings = get_settings()
    if url is None:
        configured = ApiConfig.from_settings(settings)  # raises when PLAIT_API_URL is not set
        url = configured.url
        if api_key is None:
            api_key = configured.api_key
    elif api_key is None and settings.api_key is not None and settings.api_url is not None:
        # the configured key belongs to the configured server only
        same = ApiConfig(settings.api_url).url == ApiConfig(url).url
        api_key = settings.api_key.get_secret_value() if same else None
    return ApiConfig(url, api_key, float(timeout if timeout is not None else settings.api_timeout))


def block_body(block: Block) -> tuple[str, dict[str, Any]]:
    """``(slug, body)`` of ``PUT /blocks/documents/{slug}/{name}`` for a block object."""
    from plait.blocks._payloads import block_payload

    return type(block).block_type_slug, block_payload(block)
