"""Secrets at rest: Fernet (AES-128-CBC with HMAC-SHA256) over the values we must be able to read back.

Keys come from ENCRYPTION_KEY (a comma-separated list, newest first) and, last, one derived from
SECRET_KEY, so an install that never set ENCRYPTION_KEY still encrypts, and one that starts
setting it can still read what was written before. New values are encrypted with the first key;
`flask rotate-encryption-key` rewrites every stored value with it (docs/security.md).
"""
from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

__all__ = ["InvalidToken", "derived_key", "keys_from", "encrypt", "decrypt", "rotate", "EncryptedText"]


def derived_key(secret_key: str) -> str:
    """A Fernet key from SECRET_KEY: SHA-256 of it, under a label so it is not the session key itself."""
    digest = hashlib.sha256(b"supertest encryption key\x00" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def keys_from(encryption_key: str, secret_key: str) -> tuple[str, ...]:
    """The keys in use, newest first; raises ValueError naming a key that is not a Fernet key."""
    keys = [key.strip() for key in encryption_key.split(",") if key.strip()]
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ValueError(f"key {number} is not a Fernet key (32 bytes, url-safe base64; make one with "
                             "`flask new-encryption-key`)") from None
    derived = derived_key(secret_key)
    return tuple(keys + ([derived] if derived not in keys else []))


@lru_cache(maxsize=8)
def _box(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    return _box(tuple(current_app.config["ENCRYPTION_KEYS"]))


def encrypt(text: str) -> str:
    return _current().encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    """The plain text; InvalidToken when no key in use made it (a key was dropped too soon)."""
    return _current().decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    """The same value, encrypted with the newest key."""
    return _current().rotate(token.encode()).decode()


class EncryptedText(TypeDecorator[str]):
    """A text column stored as a Fernet token with the app's keys; Python code sees plain text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else decrypt(value)
