"""Hostile receipts, JWS attestations, attestation envelopes and stored strings, against the real
service over real HTTP and the real ``deepfake-client`` in a subprocess.

A token or envelope that is not a well-formed receipt or attestation is answered ``valid: false``
with an ``error`` (never a 500, and the keep-alive connection survives it); the offline verifier
prints one line and exits 1 (never a traceback); and the client never lets a stored string (a file
name, a code, a message) drive the terminal: control characters are dropped and rich markup is
shown, not interpreted.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from joserfc import jwk, jws
from rich.console import Console

from deepfake_client.__main__ import printable
from model_contract.attestations import ATTESTATION_TYPE
from preprocess_service.integrity import ENVELOPE_MAGIC, KEY_FILE, attestation_payload, key_id_of
from preprocess_service.settings import Settings
from testing.server import post_file, running_service

PAYLOAD = b"any bytes: the integrity routes do not care whether it is a video" * 64
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
HOSTILE_NAME = "\x1b[31mred\x1b[0m[bold]x\x9b2J\x7f.mp4"  # ESC, rich markup, C1 CSI, DEL (no '/': it is a path)
DEEP = 20_000


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unsigned(header: bytes, payload: bytes = b"{}") -> str:
    """A compact JWS shape with this header segment and a signature that cannot hold."""
    return ".".join([b64url(header), b64url(payload), b64url(b"\0" * 256)])


def header_tokens(key_id: str, typ: str = "deepfake-receipt+jws") -> dict[str, str]:
    """Tokens whose header alone is wrong: ``key_id`` is a real key's, so parsing goes as far as it can."""
    real = {"alg": "RS256", "typ": typ}
    return {
        "kid is a list": unsigned(json.dumps({**real, "kid": [key_id]}).encode()),
        "kid is an object": unsigned(json.dumps({**real, "kid": {"id": key_id}}).encode()),
        "kid is a number": unsigned(json.dumps({**real, "kid": 5}).encode()),
        "kid is true": unsigned(json.dumps({**real, "kid": True}).encode()),
        "header nested 20000 deep": unsigned(b"[" * DEEP + b"]" * DEEP),
        "kid nested 20000 deep": unsigned(b'{"alg":"RS256","kid":' + b"[" * DEEP + b"]" * DEEP + b"}"),
        "kid is a lone surrogate": unsigned(b'{"alg":"RS256","kid":"\\udcff"}'),
        "header is a list": unsigned(b"[]"),
        "header is a string": unsigned(b'"RS256"'),
        "header is a number": unsigned(b"1e999"),
        "header is null": unsigned(b"null"),
        "header is not UTF-8": unsigned(b"\xff\xfe\xfd"),
        "header is not JSON": unsigned(b"{alg: RS256"),
        "header has a 5000-digit number": unsigned(b'{"kid":' + b"9" * 5000 + b"}"),
        "crit is a number": unsigned(json.dumps({**real, "kid": key_id, "crit": 5}).encode()),
        "crit holds a list": unsigned(json.dumps({**real, "kid": key_id, "crit": [["b64"]]}).encode()),
        "alg is a list": unsigned(json.dumps({"alg": ["RS256"], "kid": key_id}).encode()),
        "header is not base64": "!!!." + b64url(b"{}") + ".AAAA",
        "one segment": b64url(json.dumps({**real, "kid": key_id}).encode()),
        "five segments": ".".join([b64url(json.dumps({**real, "kid": key_id}).encode()), "e", "e", "e", "e"]),
        "empty": "...",
    }


def signed_tokens(private_key: rsa.RSAPrivateKey, file_sha256: str) -> dict[str, str]:
    """Tokens whose signature holds (made with the real key) but whose claims are not a receipt's."""
    key = jwk.RSAKey.import_key(private_key)
    header = {"alg": "RS256", "kid": key_id_of(private_key.public_key()), "typ": "deepfake-receipt+jws"}
    now = int(datetime.now(UTC).timestamp())
    good = {"iss": "deepfake-detector", "v": 1, "iat": now, "file": {"sha256": file_sha256, "size": 1}}

    def sign(payload: bytes) -> str:
        return jws.serialize_compact(header, payload, key)

    def claims(**changes: object) -> str:
        return sign(json.dumps({**good, **changes}).encode())

    return {
        "iat is a string": claims(iat="yesterday"),
        "iat is huge": claims(iat=10**30),
        "iat is past year 9999": claims(iat=253402300800),
        "iat is negative": claims(iat=-(10**15)),
        "iat is a list": claims(iat=[now]),
        "iat is a float": claims(iat=1e308),
        "iat is true": claims(iat=True),
        "iat is missing": sign(json.dumps({"iss": "deepfake-detector", "file": good["file"]}).encode()),
        "file is a string": claims(file=file_sha256),
        "file is a list": claims(file=[file_sha256]),
        "file is null": claims(file=None),
        "file sha256 is a number": claims(file={"sha256": 5}),
        "claims are a list": sign(json.dumps([good]).encode()),
        "claims are a string": sign(b'"receipt"'),
        "claims are null": sign(b"null"),
        "claims are not JSON": sign(b"not json at all"),
        "claims are not UTF-8": sign(b"\xff\xfe"),
        "claims hold a lone surrogate": claims(result="\udcff"),
        "claims hold NaN": sign(json.dumps({**good, "result": float("nan")}).encode()),
        "claims nested 20000 deep": sign(b"[" * DEEP + b"]" * DEEP),
        "claims nested 900 deep": sign(json.dumps({**good, "model": json.loads("[" * 900 + "]" * 900)}).encode()),
    }


def good_token(private_key: rsa.RSAPrivateKey, file_sha256: str) -> str:
    """A well-formed receipt for the file, signed with the key: what must still verify."""
    key_id = key_id_of(private_key.public_key())
    claims = {"iss": "deepfake-detector", "v": 1, "iat": int(datetime.now(UTC).timestamp())}
    claims["file"] = {"sha256": file_sha256, "size": len(PAYLOAD)}
    payload = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    return jws.serialize_compact({"alg": "RS256", "kid": key_id}, payload, jwk.RSAKey.import_key(private_key))


def signed_attestations(private_key: rsa.RSAPrivateKey, file_sha256: str) -> dict[str, str]:
    """JWS attestations whose signature holds (the real key) but whose header or claims are not an attestation's."""
    key = jwk.RSAKey.import_key(private_key)
    key_id = key_id_of(private_key.public_key())
    header = {"alg": "RS256", "kid": key_id, "typ": ATTESTATION_TYPE}
    good = {"iss": "deepfake-detector", "iat": int(datetime.now(UTC).timestamp()), "sha256": file_sha256}
    good["size"] = len(PAYLOAD)

    def sign(payload: bytes, protected: dict = header) -> str:
        return jws.serialize_compact(protected, payload, key)

    def claims(**changes: object) -> str:
        return sign(json.dumps({**good, **changes}).encode())

    return {
        "no typ (a bare JWS)": sign(json.dumps(good).encode(), {"alg": "RS256", "kid": key_id}),
        "a receipt's typ": sign(json.dumps(good).encode(), {**header, "typ": "deepfake-receipt+jws"}),
        "a well-formed receipt of the file": good_token(private_key, file_sha256),
        "iat is past year 9999": claims(iat=253402300800),
        "iat is huge": claims(iat=10**30),
        "iat is negative": claims(iat=-(10**15)),
        "iat is a float": claims(iat=1e308),
        "iat is true": claims(iat=True),
        "sha256 is a number": claims(sha256=5),
        "sha256 is a list": claims(sha256=[file_sha256]),
        "sha256 is another file's": claims(sha256="ab" * 32),
        "size is another file's": claims(size=len(PAYLOAD) + 1),
        "size is a string": claims(size=str(len(PAYLOAD))),
        "size has 5000 digits": sign(json.dumps({**good, "size": None}).encode().replace(b"null", b"9" * 5000)),
        "claims are a list": sign(json.dumps([good]).encode()),
        "claims are not UTF-8": sign(b"\xff\xfe"),
        "claims hold a lone surrogate": claims(note="\udcff"),
        "claims hold NaN": sign(json.dumps({**good, "note": float("nan")}).encode()),
        "claims nested 20000 deep": sign(b"[" * DEEP + b"]" * DEEP),
        "claims nested 900 deep": claims(note=json.loads("[" * 900 + "]" * 900)),
    }


def good_attestation(private_key: rsa.RSAPrivateKey, file_sha256: str) -> str:
    """A well-formed attestation of the file, signed with the key: what must still verify."""
    claims = {"iss": "deepfake-detector", "iat": int(datetime.now(UTC).timestamp()), "sha256": file_sha256}
    payload = json.dumps({**claims, "size": len(PAYLOAD)}).encode()
    header = {"alg": "RS256", "kid": key_id_of(private_key.public_key()), "typ": ATTESTATION_TYPE}
    return jws.serialize_compact(header, payload, jwk.RSAKey.import_key(private_key))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile_tokens")


@pytest.fixture(scope="module")
def service(demo_repository: Path, folder: Path):
    settings = Settings(
        model_repository=demo_repository,
        keys_dir=folder / "keys",
        database_url=f"sqlite:///{folder}/h.sqlite3",
        rate_limit="100000/minute",  # this module makes many calls from one address on purpose
        signing_rate_limit="100000/minute",
    )
    with running_service(settings) as url:
        yield url


@pytest.fixture(scope="module")
def service_key(service: str, folder: Path) -> rsa.RSAPrivateKey:
    """The running service's own private key (generated at its start into keys_dir)."""
    key = serialization.load_pem_private_key((folder / "keys" / KEY_FILE).read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def local_address(response: httpx.Response) -> tuple:
    """The client side of the TCP connection that carried the response: the same address means the
    connection was kept alive and reused."""
    return response.extensions["network_stream"].get_extra_info("client_addr")


def assert_answered_invalid(response: httpx.Response) -> None:
    """A token that cannot be read is 400 ``malformed_token``; a readable one that proves nothing is
    200 ``valid: false``: either way with words, and never on a connection the server closes."""
    body = response.json()
    if response.status_code == 400:
        assert body["error"]["code"] == "malformed_token" and body["error"]["message"], body
    else:
        assert response.status_code == 200, response.text[:300]
        assert body["valid"] is False and isinstance(body["error"], str) and body["error"], body
    assert response.headers.get("connection", "").lower() != "close"


THE_ISSUES_CASES = ["kid is a list", "kid is an object", "kid is a number", "header nested 20000 deep"]


def test_the_reported_tokens_are_400_malformed_token(service, service_key):
    """The cases issue 18 found answering 500 (a kid of another type, a header 20,000 levels deep, an
    envelope time past year 9999): each now 400 with its code, on a connection kept alive."""
    key_id = key_id_of(service_key.public_key())
    receipts = header_tokens(key_id)
    late = base64.b64encode(ENVELOPE_MAGIC + bytes.fromhex(key_id) + (253402300800000).to_bytes(8, "big") + b"\0" * 256)
    with httpx.Client(timeout=60) as client:
        answers = [verify_receipt(client, service, receipts[case]) for case in THE_ISSUES_CASES]
        files = {"file": ("clip.mp4", PAYLOAD)}
        answers.append(
            client.post(service + "/integrity/verify", files=files, data={"signature_base64": late.decode()})
        )
        for answer in answers:
            assert answer.status_code == 400 and answer.json()["error"]["code"] == "malformed_token", answer.text
        assert len({local_address(answer) for answer in answers}) == 1  # one connection throughout


def bad_call_problem(send: Callable[[httpx.Client, str], httpx.Response], client: httpx.Client, token: str) -> str:
    """What is wrong with the answer to one bad call ('' when it is valid=false on a kept connection)."""
    try:
        response = send(client, token)
    except httpx.TransportError as error:  # the server dropped the connection instead of answering
        return f"no answer: {type(error).__name__}: {error}"
    try:
        assert_answered_invalid(response)
    except (AssertionError, ValueError) as error:
        return f"{response.status_code} connection={response.headers.get('connection')}: {error}"[:300]
    return ""


def assert_bad_then_good_on_one_connection(
    send: Callable[[httpx.Client, str], httpx.Response], bad: dict[str, str], good: str
) -> None:
    """Every bad call is answered valid=false and the next good call rides the same connection.
    Every case is tried and every failure named (a dropped connection included), not only the first."""
    with httpx.Client(timeout=60) as client:
        first = send(client, good)
        assert first.status_code == 200 and first.json()["valid"] is True, first.text
        address = local_address(first)
        assert address is not None  # httpcore tells which socket carried it
        failures = {}
        for name, token in bad.items():
            problem = bad_call_problem(send, client, token)
            try:
                after = send(client, good)
            except httpx.TransportError as error:  # the bad call's connection was closed under it
                problem = problem or f"the next call on its connection failed: {type(error).__name__}"
                after = send(client, good)  # on a new connection
            assert after.status_code == 200 and after.json()["valid"] is True, (name, after.text)
            if local_address(after) != address:
                problem = problem or "the connection was not kept alive"
                address = local_address(after)
            if problem:
                failures[name] = problem
        assert not failures, json.dumps(failures, indent=1)


def verify_receipt(client: httpx.Client, url: str, token: str) -> httpx.Response:
    files = {"file": ("clip.mp4", PAYLOAD)}
    return client.post(url + "/integrity/verify-receipt", files=files, data={"receipt": token})


def test_malformed_receipt_headers_are_invalid_not_500(service, service_key):
    key_id = key_id_of(service_key.public_key())
    assert_bad_then_good_on_one_connection(
        lambda client, token: verify_receipt(client, service, token),
        header_tokens(key_id),
        good_token(service_key, PAYLOAD_SHA256),
    )


def test_signed_receipts_with_odd_claims_are_invalid_not_500(service, service_key):
    assert_bad_then_good_on_one_connection(
        lambda client, token: verify_receipt(client, service, token),
        signed_tokens(service_key, PAYLOAD_SHA256),
        good_token(service_key, PAYLOAD_SHA256),
    )


def envelope(key_id: str, signed_at_ms: int, signature: bytes) -> str:
    return base64.b64encode(
        ENVELOPE_MAGIC + bytes.fromhex(key_id) + signed_at_ms.to_bytes(8, "big") + signature
    ).decode()


def test_attestations_out_of_range_or_garbage_are_invalid_not_500(service, service_key):
    key_id = key_id_of(service_key.public_key())
    digest = bytes.fromhex(PAYLOAD_SHA256)

    def attest(signed_at_ms: int) -> str:
        """Really signed by the service's key, over a time no date can hold."""
        payload = attestation_payload(digest, signed_at_ms, key_id)
        return envelope(key_id, signed_at_ms, service_key.sign(payload, padding.PKCS1v15(), hashes.SHA256()))

    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    bad = {
        "time 0xFFFFFFFFFFFFFFFF": envelope(key_id, 0xFFFFFFFFFFFFFFFF, b"\0" * 256),
        "time in year 10000": envelope(key_id, 253402300800000, b"\0" * 256),
        "unknown key, time 0xFFFFFFFFFFFFFFFF": envelope("ab" * 32, 0xFFFFFFFFFFFFFFFF, b"\0" * 256),
        "signed, time 0xFFFFFFFFFFFFFFFF": attest(0xFFFFFFFFFFFFFFFF),
        "signed, time in year 10000": attest(253402300800000),
        "short signature": envelope(key_id, now_ms, b"\1"),
        "long signature": envelope(key_id, now_ms, b"\1" * 40_000),  # base64 under the 64 KiB field limit
        "magic and one byte": base64.b64encode(ENVELOPE_MAGIC + b"\1").decode(),
        "magic and 41 bytes": base64.b64encode(ENVELOPE_MAGIC + b"\1" * 41).decode(),
        "garbage": base64.b64encode(bytes(range(256)) * 3).decode(),
        "empty": "",
    }

    def send(client: httpx.Client, signature: str) -> httpx.Response:
        files = {"file": ("clip.mp4", PAYLOAD)}
        return client.post(service + "/integrity/verify", files=files, data={"signature_base64": signature})

    assert_bad_then_good_on_one_connection(send, bad, attest(now_ms))


def verify_attestation(client: httpx.Client, url: str, token: str) -> httpx.Response:
    files = {"file": ("clip.mp4", PAYLOAD)}
    return client.post(url + "/integrity/verify", files=files, data={"attestation": token})


def test_malformed_attestation_headers_are_invalid_not_500(service, service_key):
    key_id = key_id_of(service_key.public_key())
    assert_bad_then_good_on_one_connection(
        lambda client, token: verify_attestation(client, service, token),
        header_tokens(key_id, ATTESTATION_TYPE),
        good_attestation(service_key, PAYLOAD_SHA256),
    )


def test_signed_attestations_with_odd_headers_or_claims_are_invalid_not_500(service, service_key):
    assert_bad_then_good_on_one_connection(
        lambda client, token: verify_attestation(client, service, token),
        signed_attestations(service_key, PAYLOAD_SHA256),
        good_attestation(service_key, PAYLOAD_SHA256),
    )


# ---- the offline verifier: deepfake-client receipt verify FILE TOKEN --public-key key.pem ----


STRANGER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # no service knows it


@pytest.fixture(scope="module")
def offline(folder: Path) -> tuple[Path, Path]:
    """(the file, its public key's PEM): all the offline verifier needs; no service."""
    pem = STRANGER_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (folder / "key.pem").write_bytes(pem)
    (folder / "clip.mp4").write_bytes(PAYLOAD)
    return folder / "clip.mp4", folder / "key.pem"


def client_cli(*argv: str) -> subprocess.CompletedProcess:
    """``python -m deepfake_client`` as a user runs it: its own process, a plain (non-terminal) output."""
    env = {key: value for key, value in os.environ.items() if key not in {"FORCE_COLOR", "TTY_COMPATIBLE"}}
    env["TERM"] = "dumb"
    return subprocess.run(
        [sys.executable, "-m", "deepfake_client", *argv],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=120,
        env=env,
    )


OFFLINE_TOKENS = {**header_tokens(key_id_of(STRANGER_KEY.public_key())), **signed_tokens(STRANGER_KEY, PAYLOAD_SHA256)}


def test_the_offline_verifier_accepts_a_good_receipt(offline):
    file, pem = offline
    token_file = file.with_suffix(".receipt")
    token_file.write_text(good_token(STRANGER_KEY, PAYLOAD_SHA256))
    done = client_cli(
        "--url", "http://127.0.0.1:9", "receipt", "verify", str(file), "@" + str(token_file), "--public-key", str(pem)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["valid"] is True


@pytest.mark.parametrize("case", list(OFFLINE_TOKENS))
def test_the_offline_verifier_says_one_line_and_exits_1(offline, case):
    file, pem = offline
    token_file = file.with_suffix(".receipt")
    token_file.write_text(OFFLINE_TOKENS[case])
    done = client_cli(
        "--url", "http://127.0.0.1:9", "receipt", "verify", str(file), "@" + str(token_file), "--public-key", str(pem)
    )
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output, output[-2000:]
    assert done.returncode == 1, output[-2000:]
    assert len(lines) == 1, output[-2000:]
    assert json.loads(done.stdout)["valid"] is False  # the verdict is the one line, on standard output


OFFLINE_ATTESTATIONS = {
    **header_tokens(key_id_of(STRANGER_KEY.public_key()), ATTESTATION_TYPE),
    **signed_attestations(STRANGER_KEY, PAYLOAD_SHA256),
}
# each case costs a process start; these reach every stage of the check (every case is checked in
# process by tests/unit/test_integrity.py, against the service above)
OFFLINE_ATTESTATION_CASES = [
    "kid nested 20000 deep",
    "kid is an object",
    "crit holds a list",
    "a well-formed receipt of the file",
    "iat is past year 9999",
    "claims nested 20000 deep",
    "size is another file's",
]


def test_the_offline_attestation_verifier_accepts_a_good_one_and_says_one_line_for_the_rest(offline):
    file, pem = offline
    token_file = file.with_suffix(".attestation.jws")
    argv = ["--url", "http://127.0.0.1:9", "verify", str(file), str(token_file), "--public-key", str(pem)]
    token_file.write_text(good_attestation(STRANGER_KEY, PAYLOAD_SHA256))
    done = client_cli(*argv)
    assert done.returncode == 0 and json.loads(done.stdout)["valid"] is True, done.stdout + done.stderr
    for case in OFFLINE_ATTESTATION_CASES:
        token_file.write_text(OFFLINE_ATTESTATIONS[case])
        done = client_cli(*argv)
        output = done.stdout + done.stderr
        assert "Traceback" not in output and done.returncode == 1, (case, output[-2000:])
        assert len([line for line in output.splitlines() if line.strip()]) == 1, (case, output)
        assert json.loads(done.stdout)["valid"] is False, case


def test_the_offline_verifier_says_one_line_for_a_bad_key_file_or_token_file(offline, folder):
    file, _ = offline
    (folder / "not_a_key.pem").write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    (folder / "binary.receipt").write_bytes(b"\xff\xfe\x00 not text")
    (folder / "answer.json").write_text("[not json")
    token = unsigned(b'{"alg":"RS256","kid":"x"}')
    attempts = {
        "not a key": ["receipt", "verify", str(file), token, "--public-key", str(folder / "not_a_key.pem")],
        "no such key": ["receipt", "verify", str(file), token, "--public-key", str(folder / "missing.pem")],
        "binary token file": ["receipt", "verify", str(file), "@" + str(folder / "binary.receipt")]
        + ["--public-key", str(folder / "key.pem")],
        "bad answer": ["receipt", "verify", str(file), token, "--public-key", str(folder / "key.pem")]
        + ["--answer", str(folder / "answer.json")],
        "no service to fetch keys from": ["receipt", "verify", str(file), token],  # --url is where nothing listens
    }
    for name, argv in attempts.items():
        done = client_cli("--url", "http://127.0.0.1:9", *argv)
        output = done.stdout + done.stderr
        assert "Traceback" not in output, (name, output[-2000:])
        assert done.returncode == 1, (name, output[-2000:])
        assert len([line for line in output.splitlines() if line.strip()]) == 1, (name, output)
        assert done.stdout == "" and done.stderr.startswith("error: "), (name, output)  # a problem, not a verdict


# ---- stored strings in the client's tables ----


def rendered(value: object) -> str:
    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    console.print(printable(value))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_printable_drops_control_characters_and_keeps_markup_literal():
    assert printable(HOSTILE_NAME).plain == "[31mred[0m[bold]x2J.mp4"
    every_control = "".join(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0)]))
    assert printable("a" + every_control + "b").plain == "ab"
    assert printable("\u202egnp.exe\u2066x\u2069").plain == "gnp.exex"  # bidirectional overrides and isolates
    assert printable("naïve — 日本語 😀.mp4").plain == "naïve — 日本語 😀.mp4"  # ordinary text is kept
    assert printable(None).plain == "" and printable(3).plain == "3"
    text = rendered("[bold red]x[/bold red] :smile: \x1b]0;title\x07")
    assert "[bold red]x[/bold red] :smile: ]0;title" in text and "\x1b" not in text and "\x07" not in text


@pytest.fixture(scope="module")
def hostile_video(seed_videos: list[Path]) -> bytes:
    return seed_videos[0].read_bytes()


def test_history_shows_stored_file_names_without_escapes_or_markup(service, hostile_video):
    response = post_file(service, hostile_video, filename=HOSTILE_NAME)
    assert response.status_code == 200, response.text
    sha256 = response.json()["sha256_hex"]
    done = client_cli("--url", service, "history", "--sha256", sha256)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\x1b" not in done.stdout and "\x9b" not in done.stdout and "\x7f" not in done.stdout
    assert "[bold]x" in done.stdout, done.stdout  # shown, not interpreted as markup
    assert "in all, page 1" in done.stdout


def test_predict_table_shows_names_and_errors_without_escapes_or_markup(service, hostile_video, tmp_path):
    video = tmp_path / "\x1b[2J[bold]clip\x9b.mp4"
    video.write_bytes(hostile_video)
    refused = tmp_path / "\x1b[31m[red]notes\x07.mp4"
    refused.write_bytes(b"hello, not a video" * 100)
    done = client_cli("--url", service, "predict", str(video), str(refused))
    assert done.returncode == 1, done.stdout + done.stderr  # one file was refused
    for control in ("\x1b", "\x9b", "\x07"):
        assert control not in done.stdout, done.stdout
    assert "[2J[bold]clip.mp4" in done.stdout and "[31m[red]notes.mp4" in done.stdout, done.stdout
    assert "not_a_video" in done.stdout
