"""Signed webhooks: a job's outcome POSTed to the URL its owner gave, once it is finished.

Signature: Stripe's scheme. ``X-Deepfake-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``, the HMAC
over ``f"{t}.".encode() + body`` keyed with the owner's secret (its text as UTF-8 bytes). Binding the
time into the MAC lets receivers refuse replays older than a few minutes; a new time (and so a new
signature) is made for every attempt. ``deepfake_client.webhooks.verify`` is the receiving side.
Only the body and the time are signed: the event and delivery headers are conveniences, and a
receiver that acts on what a job did should read it from the body.

Secrets: one per owner (API key), derived from one service key (``webhook.key`` in the keys folder)
as HMAC(key, "webhook:" + owner). Nothing per owner is stored, and one tenant's secret says nothing
about another's, so no tenant can sign a webhook another would accept.

SSRF: the URL is the caller's, and the service sits inside someone's network. The URL's form is
checked when a job is submitted (``check_url``: a 4xx at once). The address is checked again at
*every* attempt (``resolve_allowed``: DNS may answer differently between attempts — rebinding),
and the request then goes to that checked address, not to a second resolution: the URL's host is
replaced by the address, with the name kept in ``Host`` and, for https, in the TLS SNI and the
certificate check (httpcore's ``sni_hostname`` extension). What is left is what the name's owner
legitimately controls: the certificate and the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import random
import re
import socket
import ssl
import stat
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Deepfake-Signature"
EVENT_HEADER = "X-Deepfake-Event"
DELIVERY_HEADER = "X-Deepfake-Delivery"
USER_AGENT = "deepfake-webhooks/1"
KEY_FILE = "webhook.key"
MAX_URL_LENGTH = 2048
RESPONSE_READ_BYTES = 4096  # enough for an error's first words; a receiver cannot make us read more
ADDRESSES_PER_ATTEMPT = 3  # a name with IPv6 and IPv4 addresses: the next one where a connection fails

log = logging.getLogger("deepfake.webhooks")

_HOSTNAME = re.compile(r"[a-z0-9_.-]+", re.IGNORECASE)  # raw_host is ASCII (IDNA) already
_INET_ATON_FORM = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)  # 2130706433, 0177.0.0.1, 0x7f.1: what C resolvers read
# Not globally routable, named where Python's is_global does not already say so (or says so only in
# some 3.11 releases): shared address space, IETF protocol assignments, documentation, benchmarking,
# the old 6to4 relay anycast, multicast, reserved; NAT64's local prefix, discard-only, site-local.
_FORBIDDEN_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/8",  # unspecified, loopback, IPv4-compatible
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",  # Teredo, ORCHIDs, benchmarking...
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: the last 32 bits are the IPv4 reached

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(ValueError):
    """A webhook URL or address the service will not call. ``code`` is what an API answer carries."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code


@dataclass(frozen=True)
class WebhookPolicy:
    allow_private: bool = False  # only where every receiver is the operator's own (a lab, one tenant)
    timeout_s: float = 10.0  # per attempt, the whole exchange: a receiver dripping bytes cannot hold a worker
    max_attempts: int = 5
    first_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_body_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.timeout_s <= 0 or self.first_backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("max_attempts must be at least 1, the timeout positive and the backoffs not negative")


@dataclass
class DeliveryResult:
    delivered: bool
    attempts: int  # requests tried (a refused address counts); 0 where nothing was tried at all
    status: int | None  # the last answer's HTTP status; None where none came
    error: str | None
    code: str | None = None  # machine-readable, where the URL itself was refused (WebhookRefused.code)


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Deepfake-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def owner_secret(key: bytes, owner: str) -> str:
    """The secret ``owner``'s receivers verify with: derived, so nothing per owner is stored, and
    rotating ``webhook.key`` rotates every owner's at once."""
    return hmac.new(key, b"webhook:" + owner.encode(), hashlib.sha256).hexdigest()


def load_webhook_key(keys_dir: Path) -> bytes:
    """The service's webhook key: read, or made once (32 random bytes, hex, mode 0600).

    Never replaced while one exists: every owner's secret derives from it, and receivers hold those.
    Hence a hard link rather than ``os.replace`` to put it in place: the file appears whole (it is
    written under a temporary name first), and where two workers start together the second link
    fails, so the first writer wins and the other reads that key instead of replacing it with its own.
    """
    path = keys_dir / KEY_FILE
    if path.exists():
        return _read_key(path)
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = os.urandom(32)
    handle, temporary = tempfile.mkstemp(prefix=".webhook-", dir=keys_dir)  # mode 0600
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(key.hex() + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return _read_key(path)
    finally:
        os.unlink(temporary)
    return key


def _read_key(path: Path) -> bytes:
    """A key that cannot be read is an error, never a reason to make a new one (see load_webhook_key)."""
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by others than its owner; every tenant's webhook secret derives from it", path)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(f"{path} does not hold a webhook key (32 bytes, hex-encoded)")
    return key


def check_url(url: str, allow_private: bool = False) -> None:
    """Refuse, before a job is queued, a webhook URL no attempt could ever call: not http(s), no host,
    credentials in it (they would sit in the jobs table and the logs), too long, or an address that is
    not public written into the URL itself. Names are not resolved here (``resolve_allowed`` does, at
    each attempt): what a name resolves to now says nothing of what it resolves to later."""
    parsed = _parse(url)
    if allow_private:
        return
    host = parsed.raw_host.decode("ascii")
    if host.rstrip(".").lower() == "localhost" or host.rstrip(".").lower().endswith(".localhost"):
        raise _forbidden_refusal()  # RFC 6761: always loopback, whatever a resolver says
    literal = _literal_address(host)
    if literal is not None and _is_forbidden(literal):
        raise _forbidden_refusal()


async def resolve_allowed(url: str, allow_private: bool) -> list[str]:
    """The addresses the URL's host has now, every one of them allowed; else WebhookRefused.

    All must pass, not some: the connection may go to any of them. IP literals are read here
    (``::ffff:127.0.0.1`` included); names and the old numeric forms (``2130706433``, ``0177.0.0.1``)
    go through the system resolver, which is what reads those forms as 127.0.0.1."""
    parsed = _parse(url)
    host = parsed.raw_host.decode("ascii")
    literal = _literal_address(host) if ":" in host else None  # an IPv6 literal: no resolver needed
    if literal is not None:
        addresses = [literal]
    else:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except (socket.gaierror, UnicodeError) as error:
            raise WebhookRefused("webhook_host_unresolvable", f"the webhook's host did not resolve: {error}") from None
        addresses = []
        for *_, sockaddr in found:
            address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise WebhookRefused("webhook_host_unresolvable", "the webhook's host has no address")
    if not allow_private:
        refused = [address for address in addresses if _is_forbidden(address)]
        if refused:
            log.warning("webhook host %s resolves to addresses not publicly routable: %s", host, refused)
            raise _forbidden_refusal()
    return [str(address) for address in addresses]


def _parse(url: str) -> httpx.URL:
    """httpx's own parse, so the host checked is exactly the host httpx would connect to (two parsers
    that disagree on ``http://a\\@b/`` are a classic way around SSRF checks)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise WebhookRefused("webhook_url_invalid", f"the webhook URL must be 1 to {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError, TypeError) as error:
        raise WebhookRefused("webhook_url_invalid", f"the webhook URL cannot be read: {error}") from None
    if parsed.scheme not in ("http", "https"):
        raise WebhookRefused("webhook_url_invalid", "the webhook URL must be http:// or https://")
    if parsed.userinfo:
        raise WebhookRefused("webhook_url_invalid", "the webhook URL must not carry a user name or password")
    host = parsed.raw_host.decode("ascii", errors="replace")
    if not host:
        raise WebhookRefused("webhook_url_invalid", "the webhook URL names no host")
    if not _HOSTNAME.fullmatch(host) and not (":" in host and _literal_address(host) is not None):
        raise WebhookRefused("webhook_url_invalid", "the webhook URL's host is not a host name or IP address")
    if port is not None and not 0 < port < 65536:
        raise WebhookRefused("webhook_url_invalid", "the webhook URL's port is out of range")
    return parsed


def _literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, if it is an IP literal in any form a resolver would read as one."""
    try:
        return ipaddress.ip_address(host.partition("%")[0])  # a zone (fe80::1%25eth0) does not change the address
    except ValueError:
        pass
    if _INET_ATON_FORM.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_forbidden(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket
            return _is_forbidden(address.ipv4_mapped)
        embedded = [address.sixtofour, *(address.teredo or ())]
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(inner is not None and _is_forbidden(inner) for inner in embedded):
            return True
        if address.is_site_local:
            return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or any(address in network for network in _FORBIDDEN_NETWORKS if network.version == address.version)
    )


def _forbidden_refusal() -> WebhookRefused:
    # Which address it was stays in the service's log: telling the caller would let anyone map the
    # service's internal DNS one submitted URL at a time.
    return WebhookRefused("webhook_address_forbidden", "the webhook's host is not a publicly routable address")


@dataclass(frozen=True)
class _Outcome:
    status: int | None
    error: str | None
    retryable: bool
    retry_after_s: float | None = None
    code: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


Sleep = Callable[[float], Awaitable[Any]]


async def deliver(
    url: str,
    event: str,
    payload: dict,
    secret: str,
    policy: WebhookPolicy,
    sleep: Sleep = asyncio.sleep,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> DeliveryResult:
    """POST ``payload`` to ``url``, signed with ``secret``, retrying what may succeed later. Never raises
    for a delivery that fails: the result says how it ended, for the job's record.

    Retried, with exponential backoff (``first_backoff_s * 2**n``, at most ``max_backoff_s``, +-20%
    jitter so a receiver's recovery is not met by every worker at once; never sooner than a
    ``Retry-After`` in seconds asks, capped the same): 408, 429, 5xx, timeouts, connection failures and
    names that do not resolve. Not retried: other 4xx (the receiver refused this request and will
    again), an address that is not public, and redirects. A redirect is never followed — it could send
    the request (and its signature) to an internal address the check never saw — and not retried,
    since a receiver that redirects once redirects every time: the owner must give the final URL.

    ``ssl_context``: a private CA's trust (an on-premises receiver, the tests); None: httpx's default.
    """
    body_or_error = _body(payload)
    if isinstance(body_or_error, str):
        log.error("webhook %s not sent: %s", event, body_or_error)
        return DeliveryResult(False, 0, None, body_or_error)
    body = body_or_error
    if len(body) > policy.max_body_bytes:
        error = f"the webhook body is {len(body)} bytes, over the {policy.max_body_bytes}-byte limit"
        log.error("webhook %s not sent: %s", event, error)
        return DeliveryResult(False, 0, None, error, "webhook_body_too_large")
    try:
        parsed = _parse(url)
    except WebhookRefused as refused:
        return DeliveryResult(False, 0, None, refused.message, refused.code)
    delivery_id = uuid.uuid4().hex  # one per delivery, the same in every attempt: receivers de-duplicate by it
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
    }
    where = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host  # never the path or query: tokens live there
    outcome = _Outcome(None, "no attempt made", False)
    for attempt in range(1, policy.max_attempts + 1):
        outcome = await _attempt(parsed, headers, body, secret.encode(), policy, ssl_context)
        if outcome.delivered:
            return DeliveryResult(True, attempt, outcome.status, None)
        final = not outcome.retryable or attempt == policy.max_attempts
        log.warning(
            "webhook %s delivery %s to %s failed (attempt %d of %d%s): %s",
            event,
            delivery_id,
            where,
            attempt,
            policy.max_attempts,
            ", giving up" if final else "",
            outcome.error,
        )
        if final:
            why = outcome.error if not outcome.retryable else f"gave up after {attempt} attempts: {outcome.error}"
            return DeliveryResult(False, attempt, outcome.status, why, outcome.code)
        await sleep(backoff_s(policy, attempt - 1, outcome.retry_after_s))
    raise AssertionError("unreachable: the last attempt returns")  # max_attempts >= 1 (WebhookPolicy)


def backoff_s(policy: WebhookPolicy, retry: int, retry_after_s: float | None = None) -> float:
    """The wait before retry number ``retry`` + 1 (0: after the first failure)."""
    wait = min(policy.first_backoff_s * 2**retry, policy.max_backoff_s) * random.uniform(0.8, 1.2)
    if retry_after_s is not None:
        wait = max(wait, retry_after_s)
    return min(wait, policy.max_backoff_s)


def _body(payload: dict) -> bytes | str:
    """Compact and key-sorted: the same payload is the same bytes (and signature) every time."""
    try:
        return json.dumps(payload, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        return f"the webhook payload is not JSON: {error}"


async def _attempt(
    url: httpx.URL,
    headers: dict[str, str],
    body: bytes,
    secret: bytes,
    policy: WebhookPolicy,
    ssl_context: ssl.SSLContext | None,
) -> _Outcome:
    try:
        addresses = await resolve_allowed(str(url), policy.allow_private)
    except WebhookRefused as refused:  # a name that does not resolve may tomorrow; a private address will not
        return _Outcome(None, refused.message, refused.code == "webhook_host_unresolvable", code=refused.code)
    timestamp = int(time.time())
    signed = {**headers, SIGNATURE_HEADER: sign(secret, body, timestamp), "Host": url.netloc.decode("ascii")}
    failure = _Outcome(None, "no address", True)
    client = httpx.AsyncClient(
        follow_redirects=False, timeout=policy.timeout_s, trust_env=False, verify=ssl_context or True
    )
    async with client:
        for address in addresses[:ADDRESSES_PER_ATTEMPT]:
            target, extensions = _pinned(url, address)
            try:
                async with asyncio.timeout(policy.timeout_s):
                    request = client.build_request("POST", target, content=body, headers=signed, extensions=extensions)
                    response = await client.send(request, stream=True)
                    try:
                        head = await _read_some(response)
                    finally:
                        await response.aclose()
            except httpx.ConnectError as error:
                failure = _Outcome(None, f"connection failed: {_describe(error)}", True)
                continue  # the name's next address
            except (TimeoutError, httpx.TimeoutException):
                return _Outcome(None, f"timed out after {policy.timeout_s:g} s", True)
            except (httpx.HTTPError, OSError) as error:
                return _Outcome(None, f"the exchange failed: {_describe(error)}", True)
            return _classify(response, head)
    return failure


def _pinned(url: httpx.URL, address: str) -> tuple[httpx.URL, dict[str, Any]]:
    """The URL with its host replaced by the checked address, so httpx resolves nothing itself; an
    https name stays the TLS server name, for SNI and for the certificate's check."""
    extensions: dict[str, Any] = {}
    if url.scheme == "https" and _literal_address(url.raw_host.decode("ascii")) is None:
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
    return url.copy_with(host=address), extensions


async def _read_some(response: httpx.Response) -> bytes:
    """At most RESPONSE_READ_BYTES of the answer: what a receiver sends back is only ever shown in part."""
    head = b""
    async for chunk in response.aiter_raw():
        head += chunk
        if len(head) >= RESPONSE_READ_BYTES:
            break
    return head[:RESPONSE_READ_BYTES]


def _classify(response: httpx.Response, head: bytes) -> _Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return _Outcome(status, None, False)
    said = _printable(head)
    error = f"HTTP {status}" + (f": {said}" if said else "")
    if 300 <= status < 400:
        return _Outcome(status, f"{error} (a redirect: not followed; the webhook URL must be the final one)", False)
    if status in (408, 429) or status >= 500:
        return _Outcome(status, error, True, _retry_after_s(response))
    return _Outcome(status, error, False)


def _retry_after_s(response: httpx.Response) -> float | None:
    """Delay-seconds only: an HTTP-date is read as no advice (the backoff applies)."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _printable(head: bytes, limit: int = 200) -> str:
    """A receiver's words for the job's record and the log, with nothing that could forge a log line."""
    text = head.decode("utf-8", errors="replace")
    return "".join(character if character.isprintable() else " " for character in text).strip()[:limit]


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__
