"""Who may call what, and how often: API keys (stored hashed), per-caller rate limits.

Keys are configured as ``DEEPFAKE_API_KEYS=id1:sha256hex,id2:sha256hex`` (a Kubernetes Secret in a
cluster): the service only ever holds their SHA-256, so a leaked configuration leaks no key.
Callers send ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``. With keys configured,
signing always needs one (an open signing endpoint is a signing oracle) and, with
``DEEPFAKE_REQUIRE_API_KEY=true``, everything but health and docs does. With none configured (a
laptop), everything stays open, so the quick start needs no setup.

Rate limits are moving windows (the ``limits`` library) per API key when one is sent, else per
client address, so one caller cannot take every analysis slot or sign in a loop.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from fastapi import Request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from preprocess_service.errors import RateLimited, Unauthorized


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_api_keys(configured: str) -> dict[str, str]:
    """``id:sha256hex`` entries, comma-separated → {sha256hex: id}."""
    keys = {}
    for entry in filter(None, (part.strip() for part in configured.split(","))):
        key_id, _, digest = entry.partition(":")
        if not key_id or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
            raise ValueError(f"DEEPFAKE_API_KEYS entry {key_id or entry[:8]!r} is not id:sha256-hex")
        keys[digest.lower()] = key_id
    return keys


def presented_key(request: Request) -> str | None:
    if key := request.headers.get("x-api-key"):
        return key.strip()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass
class AccessPolicy:
    keys: dict[str, str]  # sha256 hex → key id
    require_everywhere: bool
    general_limit: RateLimitItem
    signing_limit: RateLimitItem

    def __post_init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def caller(self, request: Request, signing: bool) -> str:
        """The key id of an authorised caller, or ``ip:<address>`` where no key is needed."""
        key = presented_key(request)
        if key is not None and self.keys:
            digest = hash_key(key)
            match = next((key_id for known, key_id in self.keys.items() if hmac.compare_digest(known, digest)), None)
            if match is None:
                raise Unauthorized("the API key is not valid")
            return f"key:{match}"
        if self.keys and (signing or self.require_everywhere):
            raise Unauthorized("an API key is required (X-API-Key or Authorization: Bearer)")
        return f"ip:{request.client.host if request.client else 'unknown'}"

    def admit(self, request: Request, signing: bool = False) -> str:
        caller = self.caller(request, signing)
        limit = self.signing_limit if signing else self.general_limit
        if not self._limiter.hit(limit, "sign" if signing else "any", caller):
            reset, _ = self._limiter.get_window_stats(limit, "sign" if signing else "any", caller)
            raise RateLimited(
                f"more than {limit} for this caller; retry later",
                headers={"Retry-After": str(max(1, int(reset - time.time())))},
            )
        return caller


def access_policy(api_keys: str, require_everywhere: bool, rate_limit: str, signing_rate_limit: str) -> AccessPolicy:
    return AccessPolicy(parse_api_keys(api_keys), require_everywhere, parse(rate_limit), parse(signing_rate_limit))
