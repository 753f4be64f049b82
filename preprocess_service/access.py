"""Who may call what, whose stored things they see, and how often: API keys (stored hashed), owners,
the operator role, per-caller rate limits.

Keys are configured as ``DEEPFAKE_API_KEYS=id1:sha256hex,id2:sha256hex:operator`` (a Kubernetes
Secret in a cluster): the service only ever holds their SHA-256, so a leaked configuration leaks no
key. A third field ``operator`` marks a key that sees and erases every owner's analyses. Callers
send ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

Tenancy (SECURITY.md, "Tenancy"): every stored analysis, cache entry and artifact belongs to the
key id that made it. With no keys configured (a laptop) there is one shared owner, ``local``, and
everything stays open, so the quick start needs no setup. With keys configured, a caller without a
key may analyze (unless ``DEEPFAKE_REQUIRE_API_KEY=true``) but owns nothing: its answers are not
stored, never come from the history, and the history routes answer it 401.

Rate limits are moving windows (the ``limits`` library) per API key when one is sent, else per
client address. Failed authentications count toward a per-address limit of their own, so keys
cannot be guessed at the speed of the network. The counters live in memory (one process) or in a
shared storage such as Redis (``DEEPFAKE_RATE_LIMIT_STORAGE=redis://…``), so that N replicas allow
the limit once, not N times. The client address is the socket's peer: proxy headers are believed
only from ``DEEPFAKE_TRUSTED_PROXIES`` (see ``server_options``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from fastapi import Request
from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from preprocess_service.errors import RateLimited, Unauthorized

if TYPE_CHECKING:
    from preprocess_service.settings import Settings

log = logging.getLogger("deepfake.access")
SHARED_OWNER = "local"  # the one owner of everything when no keys are configured
OPERATOR_FLAG = "operator"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    operator: bool = False


def parse_api_keys(configured: str) -> dict[str, ApiKey]:
    """``id:sha256hex[:operator]`` entries, comma-separated → {sha256hex: ApiKey}."""
    keys: dict[str, ApiKey] = {}
    for entry in filter(None, (part.strip() for part in configured.split(","))):
        key_id, _, rest = entry.partition(":")
        digest, _, flag = rest.partition(":")
        if not key_id or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
            raise ValueError(f"DEEPFAKE_API_KEYS entry {key_id or entry[:8]!r} is not id:sha256-hex[:operator]")
        if flag not in ("", OPERATOR_FLAG):
            raise ValueError(f"DEEPFAKE_API_KEYS entry {key_id!r}: unknown flag {flag[:16]!r} (only 'operator')")
        if key_id == SHARED_OWNER:  # it would own what was stored with no keys (and rows migrated to it)
            raise ValueError(f"DEEPFAKE_API_KEYS: the key id {SHARED_OWNER!r} is reserved; choose another")
        if len(key_id) > 64:
            raise ValueError(f"DEEPFAKE_API_KEYS entry {key_id[:16]!r}…: a key id has at most 64 characters")
        keys[digest.lower()] = ApiKey(key_id, flag == OPERATOR_FLAG)
    return keys


def presented_key(request: Request) -> str | None:
    if key := request.headers.get("x-api-key"):
        return key.strip()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass(frozen=True)
class Caller:
    """Who is calling: whose stored analyses it may see (``owner``), and whether it sees everyone's.

    ``owner`` is None for a caller without a key where keys are configured: it owns nothing, so
    nothing of its is stored and nothing stored is shown to it."""

    owner: str | None
    operator: bool
    rate_key: str  # the rate limiter's identity: ``key:<id>`` or ``ip:<address>``

    @property
    def sees_all(self) -> bool:
        return self.operator

    @property
    def owner_filter(self) -> str | None:
        """The owner a query is restricted to; None: every owner (the operator only)."""
        return None if self.operator else self.owner


def client_address(request: Request) -> str:
    """The peer uvicorn reports: the socket's, or a trusted proxy's forwarded one (server_options)."""
    return request.client.host if request.client else "unknown"


@dataclass
class AccessPolicy:
    keys: dict[str, ApiKey]  # sha256 hex → key
    require_everywhere: bool
    general_limit: RateLimitItem
    signing_limit: RateLimitItem
    auth_failure_limit: RateLimitItem
    storage: Storage = field(default_factory=lambda: sync_storage("memory://"))

    def __post_init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(self.storage)

    @property
    def open(self) -> bool:
        """No keys configured: a laptop, one shared owner."""
        return not self.keys

    def _known(self, key: str) -> ApiKey | None:
        digest = hash_key(key)
        return next((api_key for known, api_key in self.keys.items() if hmac.compare_digest(known, digest)), None)

    def caller(self, request: Request, signing: bool) -> Caller:
        """The caller, or 401; each failed authentication counts toward the address's failure limit."""
        address = client_address(request)
        if self.open:
            return Caller(SHARED_OWNER, operator=False, rate_key=f"ip:{address}")
        key = presented_key(request)
        if key is None and not (signing or self.require_everywhere):
            return Caller(None, operator=False, rate_key=f"ip:{address}")
        if not self._within(self.auth_failure_limit, "auth-failures", address, count=False):
            raise self._limited(self.auth_failure_limit, "auth-failures", address, "failed authentications")
        api_key = self._known(key) if key is not None else None
        if api_key is None:
            self._within(self.auth_failure_limit, "auth-failures", address, count=True)
            if key is None:
                raise Unauthorized("an API key is required (X-API-Key or Authorization: Bearer)")
            raise Unauthorized("the API key is not valid")
        return Caller(api_key.key_id, operator=api_key.operator, rate_key=f"key:{api_key.key_id}")

    def admit(self, request: Request, signing: bool = False) -> Caller:
        caller = self.caller(request, signing)
        limit, scope = (self.signing_limit, "sign") if signing else (self.general_limit, "any")
        if not self._within(limit, scope, caller.rate_key, count=True):
            raise self._limited(limit, scope, caller.rate_key, "requests")
        return caller

    def _within(self, limit: RateLimitItem, scope: str, identity: str, count: bool) -> bool:
        """Hit (or only test) a window. A shared storage that fails lets the request through, logged:
        a limit must not turn a Redis outage into an outage of the service."""
        try:
            if count:
                return self._limiter.hit(limit, scope, identity)
            return self._limiter.test(limit, scope, identity)
        except Exception as error:  # the storage's own errors (redis.ConnectionError…) vary by backend
            log.error("rate-limit storage failed, request let through: %r", error)
            return True

    def _limited(self, limit: RateLimitItem, scope: str, identity: str, what: str) -> RateLimited:
        try:
            reset = self._limiter.get_window_stats(limit, scope, identity).reset_time
        except Exception:  # the storage just failed: a conservative wait
            reset = time.time() + limit.get_expiry()
        return RateLimited(
            f"more than {limit} {what} for this caller; retry later",
            headers={"Retry-After": str(max(1, int(reset - time.time())))},
        )


def sync_storage(url: str) -> Storage:
    """A synchronous ``limits`` storage (memory://, redis://, …); async ones (``async+…``) are refused."""
    storage = storage_from_string(url)
    if not isinstance(storage, Storage):
        raise ValueError(f"DEEPFAKE_RATE_LIMIT_STORAGE {url.split('://')[0]!r}: use a synchronous storage")
    return storage


def policy_for(settings: Settings) -> AccessPolicy:
    """The policy a process's settings describe (the front's app and deepfake-worker alike); a bad key
    list or storage URL fails here, at start-up."""
    return access_policy(
        settings.api_keys,
        settings.require_api_key,
        settings.rate_limit,
        settings.signing_rate_limit,
        settings.auth_failure_limit,
        settings.rate_limit_storage,
    )


def access_policy(
    api_keys: str,
    require_everywhere: bool,
    rate_limit: str,
    signing_rate_limit: str,
    auth_failure_limit: str = "20/minute",
    storage_url: str = "memory://",
) -> AccessPolicy:
    return AccessPolicy(
        parse_api_keys(api_keys),
        require_everywhere,
        parse(rate_limit),
        parse(signing_rate_limit),
        parse(auth_failure_limit),
        sync_storage(storage_url),
    )


class ProxyOptions(TypedDict):
    proxy_headers: bool
    forwarded_allow_ips: str


def server_options(trusted_proxies: str) -> ProxyOptions:
    """uvicorn's proxy settings: ``X-Forwarded-For``/``-Proto`` believed only from these addresses
    (comma-separated IPs or CIDRs; ``*`` for any, behind a proxy that always overwrites them).
    uvicorn's own default trusts 127.0.0.1, so any local client could pick its address and reset
    its limits; here the default is none."""
    trusted = ",".join(part.strip() for part in trusted_proxies.split(",") if part.strip())
    return ProxyOptions(proxy_headers=bool(trusted), forwarded_allow_ips=trusted or "")
