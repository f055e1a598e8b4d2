"""Key material: the one Fernet key that encrypts block secrets and result payloads at rest,
and the key that signs result files, derived from it.

The key comes from ``PLAIT_ENCRYPTION_KEY`` (setting ``encryption_key``) or, when that is not
set, from ``$PLAIT_HOME/encryption.key``, which the first process to need it creates (mode
0600, never replaced afterwards). Every process with the same setting, or the same
PLAIT_HOME, therefore has the same key: they can read each other's secrets and share cache
entries. Losing the key makes saved secrets and encrypted results unreadable; a different
key is detected (Fernet tokens and result signatures are authenticated) and refused.

The signing key is ``HMAC-SHA256(encryption key, "plait result signing key v1")``: a second
secret is not needed, and the derivation keeps the two uses apart (a signature never
reveals anything about the encryption key).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import threading
import uuid
from pathlib import Path
from typing import Any

from plait.exceptions import BlockError

__all__ = [
    "KEY_FILE_NAME",
    "DecryptError",
    "decrypt",
    "encrypt",
    "encryption_key",
    "fernet",
    "key_file_path",
    "signing_key",
]

KEY_FILE_NAME = "encryption.key"
# The key file's messages keep the logger they always had (users filter on it).
logger = logging.getLogger("plait.blocks")

_lock = threading.Lock()
_fernets: dict[bytes, Any] = {}
_signing_keys: dict[bytes, bytes] = {}
_file_keys: dict[tuple[str, int, int, int, int], bytes] = {}  # (path, inode, size, mtime, mode) -> key
_warned_modes: set[str] = set()
_SIGNING_LABEL = b"plait result signing key v1"


class DecryptError(Exception):
    """A token that does not decrypt with the current key (the caller names what it was)."""


def key_file_path() -> Path:
    """``$PLAIT_HOME/encryption.key``."""
    from plait.settings import get_settings

    return get_settings().home / KEY_FILE_NAME


def _read_key_file(path: Path) -> bytes:
    info = path.stat()
    cache_key = (str(path), info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode)
    key = _file_keys.get(cache_key)
    if key is not None:  # one stat per use, not a read: results are signed on every persist
        return key
    key = path.read_bytes().strip()
    if os.name == "posix":
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077 and str(path) not in _warned_modes:
            _warned_modes.add(str(path))
            logger.warning(
                "the encryption key file %s can be read by other users (mode %o); run `chmod 600 %s`",
                path, mode, path,
            )
    if key:
        with _lock:
            _file_keys[cache_key] = key
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
    """The key and where it came from (for messages), creating the key file on first use.

    Raises:
        BlockError: The key file cannot be read or created, or is empty.
    """
    from plait.settings import get_settings

    settings = get_settings()  # once: this runs on every signed result read or written
    configured = settings.encryption_key
    if configured is not None and configured.get_secret_value().strip():
        return configured.get_secret_value().strip().encode(), "PLAIT_ENCRYPTION_KEY"
    path = settings.home / KEY_FILE_NAME
    try:
        try:
            key = _read_key_file(path)
        except FileNotFoundError:
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


def fernet() -> Any:
    """The ``cryptography`` Fernet of the current key (one per key, reused).

    Raises:
        BlockError: The key is not a valid Fernet key (the message says how to make one).
    """
    from cryptography.fernet import Fernet

    key, source = encryption_key()
    cipher = _fernets.get(key)
    if cipher is None:
        try:
            cipher = Fernet(key)
        except (ValueError, TypeError):
            raise BlockError(
                f"the encryption key from {source} is not a valid Fernet key (32 url-safe base64-encoded "
                "bytes); make one with: python -c \"from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())\""
            ) from None
        with _lock:
            _fernets[key] = cipher
        from plait._masking import register_secret

        register_secret(key.decode("ascii", "replace"))
    return cipher


def encrypt(data: bytes) -> bytes:
    """``data`` as a Fernet token (AES-128-CBC with an HMAC) under the current key."""
    token: bytes = fernet().encrypt(data)
    return token


def decrypt(token: bytes) -> bytes:
    """The bytes inside a token from ``encrypt``.

    Raises:
        DecryptError: The token was made with another key (or is damaged).
    """
    from cryptography.fernet import InvalidToken

    cipher = fernet()
    try:
        data: bytes = cipher.decrypt(token)
    except (InvalidToken, ValueError, TypeError):
        raise DecryptError() from None
    return data


def signing_key() -> bytes:
    """The key that signs result files, derived from the encryption key (see the module doc)."""
    key, _source = encryption_key()
    derived = _signing_keys.get(key)
    if derived is None:
        fernet()  # the same validation (and the same error) as for secrets
        derived = hmac.new(key, _SIGNING_LABEL, hashlib.sha256).digest()
        with _lock:
            _signing_keys[key] = derived
    return derived
