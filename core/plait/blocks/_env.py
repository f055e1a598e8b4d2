"""Building a block from environment variables (``MyBlock.from_env("MY_")``), without saving it."""

from __future__ import annotations

from pydantic import ValidationError

from plait.blocks._base import Block
from plait.blocks._schema import _error_text
from plait.blocks._values import _field_kinds, _string_leaves, register_block_secrets
from plait.exceptions import BlockError, BlockValidationError

__all__ = ["block_from_env"]


def block_from_env(cls: type[Block], prefix: str) -> Block:
    """Build ``cls`` from ``<PREFIX><FIELD>`` variables (nested: ``<PREFIX><FIELD>__<INNER>``)."""
    import json

    from pydantic import create_model
    from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

    if cls is Block:
        raise BlockError("Block.from_env() needs a block class: MyBlock.from_env('MY_')")

    class _Base(BaseSettings):
        model_config = SettingsConfigDict(
            env_prefix=prefix, env_nested_delimiter="__", case_sensitive=False, extra="ignore",
        )

    settings_cls = create_model(  # type: ignore[call-overload]
        f"{cls.__name__}Environment",
        __base__=_Base,
        **{name: (info.annotation, None) for name, info in cls.model_fields.items()},
    )
    raw = {k: v for k, v in EnvSettingsSource(settings_cls)().items() if k in cls.model_fields}
    secret, _ = _field_kinds(cls)
    for key in secret & set(raw):
        # A secret dict given as JSON text (pydantic-settings parses only plain dict fields).
        if isinstance(raw[key], str) and raw[key].lstrip().startswith(("{", "[")):
            try:
                raw[key] = json.loads(raw[key])
            except ValueError:
                pass
    try:
        block = cls.model_validate(raw)
    except ValidationError as exc:
        parts = []
        nested = cls.nested_block_fields()
        for err in exc.errors(include_url=False, include_input=False):
            loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
            var = (prefix + "__".join(loc)).upper() if loc else f"{prefix}*"
            what = f"set {var}" if err.get("type") == "missing" else f"check {var}"
            if err.get("type") == "missing" and len(loc) == 1 and loc[0] in nested:
                inner = [n for n, i in nested[loc[0]][0].model_fields.items() if i.is_required()]
                what = "set " + ", ".join(f"{var}__{n.upper()}" for n in inner) if inner else what
            env_secrets = [leaf for k, v in raw.items() if k in secret for leaf in _string_leaves(v)]
            parts.append(f"field {'.'.join(loc) or '(block)'!r}: {_error_text(err, env_secrets)} ({what})")
        raise BlockValidationError(
            f"cannot build {cls.__name__} from environment variables {prefix}*: " + "; ".join(parts)
        ) from None
    register_block_secrets(block)
    return block
