"""Signed webhooks over real HTTP: a local ``http.server`` on loopback records what arrives and answers
from a script, so deliveries go through httpx, a socket and a server as they would to a receiver.
Only the waits between retries are recorded instead of slept (the ``sleep`` hook). The receiving
side is ``deepfake_client.webhooks.verify``, checked against what the server actually received."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deepfake_client import webhooks as client_webhooks
from deepfake_client.webhooks import InvalidSignature, verify
from preprocess_service.jobs import webhooks
from preprocess_service.jobs.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WebhookPolicy,
    WebhookRefused,
    check_url,
    deliver,
    load_webhook_key,
    owner_secret,
    resolve_allowed,
    sign,
)

PAYLOAD = {"job_id": "0123abcd", "state": "done", "result": {"verdict": "FAKE", "p_fake": 0.93}}
OPEN = WebhookPolicy(allow_private=True, timeout_s=5.0)  # loopback is the receiver here


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """What arrived, and the answers to give: ``script`` is popped one per request (status 0: answer 200
    a second late), then 200."""

    port: int = 0
    scheme: str = "http"
    received: list[Received] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def url(self, host: str = "127.0.0.1", path: str = "/hook?token=s3cret") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


def _serve(receiver: Receiver, tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                status, headers = receiver.script.pop(0) if receiver.script else (200, {})
            if status == 0:  # a receiver that never answers in time
                time.sleep(1.0)
                status = 200
            answer = b'{"ok":true}' if status < 300 else b"nope\n\x1b[31mforged log line"
            self.send_response(status)
            for name, value in {"Content-Length": str(len(answer)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        receiver.scheme = "https"
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)  # a quick shutdown
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve(Receiver())


class Waits(list[float]):
    """The ``sleep`` hook: records each wait the policy computed, waits for none."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def run_delivery(url: str, policy: WebhookPolicy = OPEN, secret: str = "owner-secret", **kwargs: object):
    waits = Waits()
    result = asyncio.run(deliver(url, "job.done", PAYLOAD, secret, policy, sleep=waits, **kwargs))
    return result, waits


def test_signed_delivery_arrives_once_and_verifies(receiver: Receiver, tmp_path: Path) -> None:
    """One POST with the documented headers; its signature verifies with the owner's secret, and a
    changed body, another owner's secret or an old timestamp do not."""
    key = load_webhook_key(tmp_path / "keys")
    secret = owner_secret(key, "api-key-a")
    result, waits = run_delivery(receiver.url("localhost"), secret=secret)

    assert result.delivered and result.attempts == 1 and result.status == 200 and result.error is None
    assert waits == []
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got.path == "/hook?token=s3cret"
    assert got.headers["Host"] == f"localhost:{receiver.port}"  # pinned to the checked address, named as given
    assert got.headers[EVENT_HEADER] == "job.done"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == "deepfake-webhooks/1"
    assert len(got.headers[DELIVERY_HEADER]) == 32 and int(got.headers[DELIVERY_HEADER], 16) >= 0
    assert got.body == json.dumps(PAYLOAD, separators=(",", ":"), sort_keys=True).encode()

    header = got.headers[SIGNATURE_HEADER]
    assert verify(secret, header, got.body) == PAYLOAD
    with pytest.raises(InvalidSignature):
        verify(secret, header, got.body.replace(b"FAKE", b"REAL"))
    with pytest.raises(InvalidSignature):
        verify(owner_secret(key, "api-key-b"), header, got.body)
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify(secret, header, got.body, now=time.time() + 301)
    assert verify(secret, header, got.body, now=time.time() + 200) == PAYLOAD


def test_verify_reads_the_header_strictly() -> None:
    """Stripe's header: any v1 may match (rotation), exactly one t, nothing else counts as a signature."""
    body = b'{"a":1}'
    header = sign(b"s", body, 1_700_000_000)
    at = 1_700_000_000.0
    assert verify("s", f"{header},v1={'0' * 64}", body, now=at) == {"a": 1}
    assert verify("s", f"v0=zz, v1={'0' * 64} ,{header.replace(',', ' , ')}", body, now=at) == {"a": 1}
    for bad in ["", "v1=" + "0" * 64, header.split(",")[0], f"{header},t=1700000001", "t=-5,v1=00", "x" * 5000]:
        with pytest.raises(InvalidSignature):
            verify("s", bad, body, now=at)
    with pytest.raises(InvalidSignature, match="not a JSON object"):
        verify("s", sign(b"s", b"[1]", 1_700_000_000), b"[1]", now=at)
    with pytest.raises(InvalidSignature, match="tolerance"):  # from the future as much as from the past
        verify("s", header, body, now=at - 301)


def test_client_and_service_name_the_same_headers() -> None:
    """The receiver's copy of the header names is the one the service sends."""
    assert client_webhooks.SIGNATURE_HEADER == SIGNATURE_HEADER
    assert client_webhooks.EVENT_HEADER == EVENT_HEADER
    assert client_webhooks.DELIVERY_HEADER == DELIVERY_HEADER


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "localhost:{port}",
        "[::1]:{port}",
        "2130706433:{port}",
        "0x7f.1:{port}",
        "[::ffff:127.0.0.1]:{port}",
        "169.254.169.254",
        "10.0.0.1",
    ],
)
def test_private_addresses_are_refused(receiver: Receiver, host: str) -> None:
    """Loopback, metadata and RFC 1918 addresses, however spelt, get nothing unless allowed."""
    url = f"http://{host.format(port=receiver.port)}/"
    result, waits = run_delivery(url, WebhookPolicy())
    assert not result.delivered
    assert result.code == "webhook_address_forbidden"
    assert result.attempts == 1 and waits == []  # an address is no reason to try again
    assert "127.0.0.1" not in (result.error or "") and "169.254" not in (result.error or "")
    assert receiver.received == []


def test_dotted_octal_is_no_way_round(receiver: Receiver) -> None:
    """httpx reads 0177.0.0.1 as a malformed IPv4 address, never as 127.0.0.1: refused as a URL."""
    result, _ = run_delivery(f"http://0177.0.0.1:{receiver.port}/", WebhookPolicy())
    assert not result.delivered and result.code == "webhook_url_invalid" and result.attempts == 0
    assert receiver.received == []


@pytest.mark.parametrize(
    "address",
    [
        "100.64.0.1",  # shared address space (carrier NAT)
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "192.0.2.7",
        "198.18.0.1",
        "fc00::1",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "::",
        "::127.0.0.1",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2001:db8::1",
    ],
)
def test_not_globally_routable_literals_are_refused(address: str) -> None:
    url = f"http://[{address}]/" if ":" in address else f"http://{address}/"
    with pytest.raises(WebhookRefused) as refused:
        asyncio.run(resolve_allowed(url, allow_private=False))
    assert refused.value.code == "webhook_address_forbidden"
    with pytest.raises(WebhookRefused):
        check_url(url)  # a literal is refused when the job is submitted already


def test_public_literals_pass_without_dns() -> None:
    assert asyncio.run(resolve_allowed("https://8.8.8.8/hook", allow_private=False)) == ["8.8.8.8"]
    assert asyncio.run(resolve_allowed("http://[2606:4700::1]/", allow_private=False)) == ["2606:4700::1"]
    assert asyncio.run(resolve_allowed("http://[::ffff:8.8.8.8]/", allow_private=False)) == ["::ffff:808:808"]
    check_url("https://hooks.example.com/deepfake?token=abc")  # names are not resolved at submission
    check_url("http://127.0.0.1:9/", allow_private=True)
    assert ipaddress.ip_address(asyncio.run(resolve_allowed("http://10.0.0.1/", allow_private=True))[0]).is_private


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http:///hook",
        "https://",
        "http://user:pass@example.com/hook",
        "http://token@example.com/hook",
        "https://example.com/" + "a" * 2048,
        "http://exa mple.com/",
        "http://example.com:99999/",
        "http://example.com/\nX-Injected: 1",
        "not a url",
        "",
    ],
)
def test_check_url_refuses_what_no_attempt_could_call(url: str) -> None:
    with pytest.raises(WebhookRefused) as refused:
        check_url(url, allow_private=True)
    assert refused.value.code == "webhook_url_invalid"
    assert isinstance(refused.value, ValueError)


def test_localhost_names_are_refused_at_submission() -> None:
    for url in ["http://localhost/", "http://LOCALHOST./x", "http://api.localhost:8080/"]:
        with pytest.raises(WebhookRefused) as refused:
            check_url(url)
        assert refused.value.code == "webhook_address_forbidden"


def test_server_errors_are_retried_with_the_same_delivery_id(receiver: Receiver) -> None:
    """500, 500, 200: delivered on the third attempt, one delivery id throughout, a fresh signature
    each time, and waits that grow (1 s then 2 s, each +-20%)."""
    receiver.script = [(500, {}), (500, {})]
    result, waits = run_delivery(receiver.url())
    assert result.delivered and result.attempts == 3 and result.status == 200
    assert len(receiver.received) == 3
    assert len({got.headers[DELIVERY_HEADER] for got in receiver.received}) == 1
    assert len(waits) == 2 and 0.8 <= waits[0] <= 1.2 and 1.6 <= waits[1] <= 2.4 and waits[1] > waits[0]
    for got in receiver.received:
        assert verify("owner-secret", got.headers[SIGNATURE_HEADER], got.body) == PAYLOAD


def test_retries_stop_at_max_attempts_and_honour_retry_after(receiver: Receiver) -> None:
    receiver.script = [(503, {"Retry-After": "7"}), (429, {"Retry-After": "3600"}), (408, {})]
    policy = WebhookPolicy(allow_private=True, max_attempts=3, max_backoff_s=30.0)
    result, waits = run_delivery(receiver.url(), policy)
    assert not result.delivered and result.attempts == 3 and result.status == 408
    assert result.error is not None and result.error.startswith("gave up after 3 attempts: HTTP 408")
    assert "\x1b" not in result.error  # the receiver's words, without what could forge a log line
    assert waits[0] == 7.0  # asked for more than the backoff: honoured
    assert waits[1] == 30.0  # asked for an hour: capped
    assert len(receiver.received) == 3


def test_client_errors_are_not_retried(receiver: Receiver) -> None:
    receiver.script = [(400, {})]
    result, waits = run_delivery(receiver.url())
    assert not result.delivered and result.attempts == 1 and result.status == 400
    assert result.error is not None and result.error.startswith("HTTP 400: nope")
    assert waits == [] and len(receiver.received) == 1


def test_redirects_are_neither_followed_nor_retried(receiver: Receiver) -> None:
    receiver.script = [(302, {"Location": receiver.url(path="/elsewhere")})]
    result, waits = run_delivery(receiver.url())
    assert not result.delivered and result.status == 302 and result.attempts == 1
    assert "redirect" in (result.error or "")
    assert waits == [] and [got.path for got in receiver.received] == ["/hook?token=s3cret"]


def test_connection_failures_are_retried() -> None:
    """A port nothing listens on: every attempt fails to connect, each is retried, then it gives up."""
    policy = WebhookPolicy(allow_private=True, max_attempts=2, timeout_s=2.0)
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_address[1]
    result, waits = run_delivery(f"http://127.0.0.1:{port}/", policy)
    assert not result.delivered and result.attempts == 2 and result.status is None
    assert "connection failed" in (result.error or "") and len(waits) == 1


def test_a_slow_receiver_times_out_and_is_retried(receiver: Receiver) -> None:
    receiver.script = [(0, {})]
    policy = WebhookPolicy(allow_private=True, timeout_s=0.2, max_attempts=2)
    started = time.monotonic()
    result, waits = run_delivery(receiver.url(), policy)
    assert result.delivered and result.attempts == 2 and len(waits) == 1
    assert time.monotonic() - started < 0.9  # the attempt was cut off, not waited out


def test_oversized_body_is_refused_without_a_request(receiver: Receiver) -> None:
    policy = WebhookPolicy(allow_private=True, max_body_bytes=64)
    result, waits = run_delivery(receiver.url(), policy)
    assert not result.delivered and result.attempts == 0 and result.code == "webhook_body_too_large"
    assert "64-byte limit" in (result.error or "")
    assert receiver.received == [] and waits == []


def test_unserialisable_payload_is_a_result_not_an_exception(receiver: Receiver) -> None:
    result = asyncio.run(deliver(receiver.url(), "job.done", {"x": float("nan")}, "s", OPEN))
    assert not result.delivered and result.attempts == 0 and "not JSON" in (result.error or "")
    assert receiver.received == []


def _self_signed_localhost(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for the names ``localhost`` and ``receiver.invalid`` (no IP
    address), and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName("receiver.invalid")]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    return server, ssl.create_default_context(cafile=str(cert_path))


def _resolving_to_loopback(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``receiver.invalid`` (RFC 2606: never resolves) checked as 127.0.0.1: only a request sent to the
    checked address, not to a lookup of its own, can arrive. The resolver is replaced, not the network."""
    checked: list[str] = []

    async def resolve(url: str, allow_private: bool) -> list[str]:
        checked.append(url)
        return ["127.0.0.1"]

    monkeypatch.setattr(webhooks, "resolve_allowed", resolve)
    return checked


def test_http_goes_to_the_checked_address(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """What was checked is where the request goes (no second lookup a rebinding DNS could answer
    differently), under the name it was given, re-checked at every attempt."""
    checked = _resolving_to_loopback(monkeypatch)
    receiver.script = [(500, {})]
    result, _ = run_delivery(receiver.url("receiver.invalid"))
    assert result.delivered and result.attempts == 2, result.error
    assert [got.headers["Host"] for got in receiver.received] == [f"receiver.invalid:{receiver.port}"] * 2
    assert len(checked) == 2


def test_https_is_pinned_to_the_checked_address_and_still_checks_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """https://receiver.invalid goes to the checked address, yet TLS is SNI ``receiver.invalid`` and the
    certificate (names only, no IP) is checked against that name: pinning does not weaken TLS."""
    server_tls, client_tls = _self_signed_localhost(tmp_path)
    serving = _serve(Receiver(), server_tls)
    receiver = next(serving)
    try:
        result, _ = run_delivery(receiver.url("localhost"), ssl_context=client_tls)  # the real resolver
        assert result.delivered, result.error
        _resolving_to_loopback(monkeypatch)
        result, _ = run_delivery(receiver.url("receiver.invalid"), ssl_context=client_tls)
        assert result.delivered, result.error
        hosts = [got.headers["Host"] for got in receiver.received]
        assert hosts == [f"localhost:{receiver.port}", f"receiver.invalid:{receiver.port}"]
        # the same certificate offered for a name it does not cover: refused, not delivered
        wrong = WebhookPolicy(allow_private=True, max_attempts=1)
        result, _ = run_delivery(receiver.url("127.0.0.1"), wrong, ssl_context=client_tls)
        assert not result.delivered and "connection failed" in (result.error or "")
        assert len(receiver.received) == 2
    finally:
        serving.close()


def test_webhook_key_is_made_once_private_and_per_owner(tmp_path: Path) -> None:
    folder = tmp_path / "keys" / "nested"
    key = load_webhook_key(folder)
    path = folder / "webhook.key"
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == key.hex()
    assert load_webhook_key(folder) == key
    assert owner_secret(key, "a") != owner_secret(key, "b")
    assert owner_secret(key, "a") == owner_secret(load_webhook_key(folder), "a")
    assert len(owner_secret(key, "a")) == 64
    assert [name for name in os.listdir(folder)] == ["webhook.key"]  # no temporary file left behind


def test_webhook_key_race_has_one_winner(tmp_path: Path) -> None:
    """Workers starting together all end up with the one key on disk."""
    folder = tmp_path / "keys"
    start = threading.Barrier(8)
    keys: list[bytes] = []

    def load() -> None:
        start.wait()
        keys.append(load_webhook_key(folder))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(keys) == 8 and len(set(keys)) == 1
    assert bytes.fromhex((folder / "webhook.key").read_text()) == keys[0]


def test_unreadable_key_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    (tmp_path / "webhook.key").write_text("not hex")
    with pytest.raises(ValueError, match="webhook key"):
        load_webhook_key(tmp_path)
    assert (tmp_path / "webhook.key").read_text() == "not hex"


def test_backoff_is_capped() -> None:
    policy = WebhookPolicy(first_backoff_s=1.0, max_backoff_s=10.0)
    assert all(webhooks.backoff_s(policy, retry) <= 10.0 for retry in range(20))
    assert webhooks.backoff_s(policy, 10) >= 8.0
