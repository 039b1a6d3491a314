"""API keys: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, compared in constant time."""

from __future__ import annotations

import hmac
from typing import Mapping


class AuthError(Exception):
    """``status`` 401 (no or wrong key) or 403 (writes disabled: the server has no key)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries, if any."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key")


def check_key(expected: str | None, headers: Mapping[str, str], *, write: bool) -> None:
    """Raise :class:`AuthError` unless ``headers`` carry ``expected``."""
    if expected is None:
        if write:
            raise AuthError(403, "writes are disabled: start the server with --api-key-file")
        return
    given = presented_key(headers)
    if given is None:
        raise AuthError(401, "an API key is needed: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8")):
        raise AuthError(401, "wrong API key")
