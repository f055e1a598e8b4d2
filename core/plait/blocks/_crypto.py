"""Encryption of block secrets at rest (Fernet: AES-128-CBC with an HMAC, from ``cryptography``).

The key comes from ``PLAIT_ENCRYPTION_KEY`` (setting ``encryption_key``) or, when that is not
set, from ``$PLAIT_HOME/encryption.key``, which the first process to need it creates (mode
0600, never replaced afterwards). Losing the key makes saved secrets unreadable; a different
key is detected (Fernet tokens are authenticated) and refused without changing anything.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import threading
import uuid
from pathlib import Path
from typing import Any

from plait.exceptions import BlockError

__all__ = ["KEY_FILE_NAME", "DecryptError", "encryption_key", "encrypt_value", "decrypt_value", "key_file_path"]

KEY_FILE_NAME = "encryption.key"
logger = logging.getLogger("plait.blocks")

_lock = threading.Lock()
_fernets: dict[bytes, Any] = {}
_warned_modes: set[str] = set()


class DecryptError(Exception):
    """A token that does not decrypt with the current key (the caller names the block)."""


def key_file_path() -> Path:
    from plait.settings import get_settings

    return get_settings().home / KEY_FILE_NAME


def _read_key_file(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077 and str(path) not in _warned_modes:
            _warned_modes.add(str(path))
            logger.warning(
                "the encryption key file %s can be read by other users (mode %o); run `chmod 600 %s`",
                path, mode, path,
            )
    return key


def _create_key_file(path: Path) -> None:
    """Create ``path`` holding a new key, unless another process got there first.

    The key is written to a private temporary file and hard-linked into place, so no
    process can ever read a half-written key file, and a lost race keeps the winner's key.
    """
    from cryptography.fernet import Fernet

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError:
            # A file system without hard links: exclusive create is the next best thing.
            try:
                fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            with os.fdopen(fd2, "wb") as handle:
                handle.write(tmp.read_bytes())
                handle.flush()
                os.fsync(handle.fileno())
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass


def encryption_key() -> tuple[bytes, str]:
    """The key and where it came from (for messages), creating the key file on first use."""
    from plait.settings import get_settings

    configured = get_settings().encryption_key
    if configured is not None and configured.get_secret_value().strip():
        return configured.get_secret_value().strip().encode(), "PLAIT_ENCRYPTION_KEY"
    path = key_file_path()
    try:
        if not path.exists():
            _create_key_file(path)
        key = _read_key_file(path)
    except OSError as exc:
        raise BlockError(
            f"cannot read or create the encryption key file {path}: {exc.strerror or exc}; "
            "fix its directory's permissions or set PLAIT_ENCRYPTION_KEY"
        ) from None
    if not key:
        raise BlockError(f"the encryption key file {path} is empty; restore it from a backup or delete it "
                         "(secrets saved with the lost key can then no longer be read)")
    return key, str(path)


def _fernet() -> Any:
    from cryptography.fernet import Fernet

    key, source = encryption_key()
    fernet = _fernets.get(key)
    if fernet is None:
        try:
            fernet = Fernet(key)
        except (ValueError, TypeError):
            raise BlockError(
                f"the encryption key from {source} is not a valid Fernet key (32 url-safe base64-encoded "
                "bytes); make one with: python -c \"from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())\""
            ) from None
        with _lock:
            _fernets[key] = fernet
        from plait._logging import register_secret

        register_secret(key.decode("ascii", "replace"))
    return fernet


# -- values --------------------------------------------------------------------------------------
def _to_plain(value: Any) -> Any:
    """JSON-safe form of a revealed secret value; bytes become ``{"$b64": ...}``."""
    if isinstance(value, bytes):
        return {"$b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$b64"}:
            return base64.b64decode(value["$b64"])
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


def encrypt_value(value: Any) -> str:
    """Encrypt a revealed (plain) value: str, bytes, dict, list... as a Fernet token."""
    from pydantic_core import to_jsonable_python

    payload = json.dumps(to_jsonable_python(_to_plain(value)), separators=(",", ":"))
    return _fernet().encrypt(payload.encode("utf-8")).decode("ascii")


def decrypt_value(token: str) -> Any:
    """The plain value of a token from ``encrypt_value``.

    Raises:
        DecryptError: The token was made with another key (or is damaged).
    """
    from cryptography.fernet import InvalidToken

    try:
        payload = _fernet().decrypt(token.encode("ascii"))
    except (InvalidToken, ValueError, TypeError):
        raise DecryptError() from None
    return _from_plain(json.loads(payload))
