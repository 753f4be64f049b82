"""preprocess_service.integrity, the pure parts of preprocess_service.receipts, and the client's
offline attestation check (deepfake_client.api.check_attestation).

Attestations and receipts are the service's proof of what it saw and said; a check that wrongly
says "valid", or raises on a hostile envelope or token instead of answering ``valid: false``, is a
real failure. A fresh RSA key per module, no files, no server.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwk, jws

from deepfake_client.api import check_attestation
from preprocess_service.integrity import (
    ATTESTATION_TYPE,
    ENVELOPE_MAGIC,
    LAST_SECOND,
    MALFORMED,
    MAX_RECEIPT_DEPTH,
    RECEIPT_TYPE,
    Signer,
    date_of,
    key_id_of,
    receipt_header,
    strict_json,
)
from preprocess_service.receipts import frames_digest, reissued_claims

SIGNED_AT = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)
FILE = hashlib.sha256(b"the uploaded video").digest()
OTHER_FILE = hashlib.sha256(b"another video").digest()


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(new_key())


@pytest.fixture(scope="module")
def stranger() -> Signer:
    return Signer(new_key())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(sha256: str = FILE.hex(), iat: int = 1_773_500_000) -> dict:
    return {"iss": "deepfake-detector", "iat": iat, "file": {"sha256": sha256, "size": 12}, "result": "FAKE"}


def token_with_header(header: object, signer: Signer) -> str:
    """A real receipt's payload and signature under another (hostile) protected header."""
    _, payload, signature = signer.sign_receipt(claims_of()).split(".")
    return ".".join((b64url(json.dumps(header).encode()), payload, signature))


# --- attestations -------------------------------------------------------------------------------


def test_an_attestation_verifies_for_its_file_with_its_time_and_key(signer: Signer) -> None:
    verification = signer.verify(FILE, signer.attest(FILE, SIGNED_AT))
    assert verification.valid and verification.error is None
    assert verification.kind == "attestation"
    assert verification.key_id == signer.key_id == key_id_of(signer._public_key)
    assert verification.signed_at == SIGNED_AT  # milliseconds kept


def test_an_attestation_is_magic_key_id_time_then_signature(signer: Signer) -> None:
    envelope = signer.attest(FILE, SIGNED_AT)
    assert envelope[:4] == ENVELOPE_MAGIC
    assert envelope[4:36].hex() == signer.key_id
    assert int.from_bytes(envelope[36:44], "big") == int(SIGNED_AT.timestamp() * 1000)
    assert len(envelope) == 44 + signer.signature_length


def test_an_attestation_does_not_verify_another_files_hash(signer: Signer) -> None:
    verification = signer.verify(OTHER_FILE, signer.attest(FILE, SIGNED_AT))
    assert not verification.valid
    assert verification.kind == "attestation" and verification.error


def test_an_attestation_with_a_changed_time_does_not_verify(signer: Signer) -> None:
    envelope = signer.attest(FILE, SIGNED_AT)
    later = (int.from_bytes(envelope[36:44], "big") + 1).to_bytes(8, "big")  # one millisecond later
    verification = signer.verify(FILE, envelope[:36] + later + envelope[44:])
    assert not verification.valid
    assert verification.signed_at == SIGNED_AT + timedelta(milliseconds=1)


def test_an_attestation_with_a_time_past_year_9999_is_invalid_without_raising(signer: Signer) -> None:
    envelope = signer.attest(FILE, SIGNED_AT)
    hostile = envelope[:36] + (0xFFFFFFFFFFFFFFFF).to_bytes(8, "big") + envelope[44:]
    verification = signer.verify(FILE, hostile)
    assert not verification.valid
    assert verification.kind == "attestation"
    assert verification.signed_at is None and "9999" in (verification.error or "")


def test_an_attestation_by_an_unknown_key_is_invalid(signer: Signer, stranger: Signer) -> None:
    verification = signer.verify(FILE, stranger.attest(FILE, SIGNED_AT))
    assert not verification.valid
    assert verification.key_id == stranger.key_id
    assert "does not know" in (verification.error or "")


def test_an_envelope_claiming_the_right_key_id_but_signed_by_another_key_is_invalid(
    signer: Signer, stranger: Signer
) -> None:
    forged = stranger.attest(FILE, SIGNED_AT)
    forged = forged[:4] + bytes.fromhex(signer.key_id) + forged[36:]
    assert not signer.verify(FILE, forged).valid


def test_a_previous_keys_attestations_still_verify_after_rotation() -> None:
    old = new_key()
    envelope = Signer(old).attest(FILE, SIGNED_AT)
    rotated = Signer(new_key(), previous=[old.public_key()])
    verification = rotated.verify(FILE, envelope)
    assert verification.valid and verification.key_id == key_id_of(old.public_key())
    assert not Signer(new_key()).verify(FILE, envelope).valid


def test_a_bare_legacy_signature_verifies_as_legacy(signer: Signer) -> None:
    verification = signer.verify(FILE, signer.sign(FILE))
    assert (verification.valid, verification.kind, verification.key_id) == (True, "legacy", signer.key_id)
    assert not signer.verify(OTHER_FILE, signer.sign(FILE)).valid


@pytest.mark.parametrize("signature", [b"", b"DFA1", b"DFA1" + b"\0" * 40, b"x" * 100, ENVELOPE_MAGIC + b"\xff" * 41])
def test_garbage_signatures_are_invalid_without_raising(signer: Signer, signature: bytes) -> None:
    verification = signer.verify(FILE, signature)
    assert not verification.valid and verification.error


# --- JWS attestations ---------------------------------------------------------------------------

CONTENT = b"the uploaded video"
SHA256, SIZE = hashlib.sha256(CONTENT).hexdigest(), len(CONTENT)
SIGNED_AT_S = SIGNED_AT.replace(microsecond=0)


def attestation_with(
    signer: Signer, claims: object, header: dict | None = None, private_key: rsa.RSAPrivateKey | None = None
) -> str:
    """A token really signed (by ``private_key``, else the signer's own) over these claims and header."""
    header = header or {"alg": "RS256", "kid": signer.key_id, "typ": ATTESTATION_TYPE}
    key = jwk.RSAKey.import_key(private_key or signer._private_key)
    return jws.serialize_compact(header, json.dumps(claims).encode(), key)


def test_a_jws_attestation_verifies_for_its_file(signer: Signer) -> None:
    token = signer.sign_attestation(SHA256, SIZE, SIGNED_AT)
    assert receipt_header(token) == {"alg": "RS256", "kid": signer.key_id, "typ": ATTESTATION_TYPE}
    verification = signer.verify_attestation(token, SHA256, SIZE)
    assert (verification.valid, verification.kind, verification.error) == (True, "jws-attestation", None)
    assert verification.key_id == signer.key_id and verification.signed_at == SIGNED_AT_S


def test_a_jws_attestations_claims_are_the_files_hash_size_and_time(signer: Signer) -> None:
    payload = signer.sign_attestation(SHA256, SIZE, SIGNED_AT).split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims == {"iss": "deepfake-detector", "iat": int(SIGNED_AT.timestamp()), "sha256": SHA256, "size": SIZE}


def test_a_jws_attestation_does_not_verify_a_file_with_one_byte_changed(signer: Signer) -> None:
    token = signer.sign_attestation(SHA256, SIZE, SIGNED_AT)
    changed = hashlib.sha256(CONTENT[:-1] + bytes([CONTENT[-1] ^ 1])).hexdigest()
    verification = signer.verify_attestation(token, changed, SIZE)
    assert not verification.valid and "another file" in (verification.error or "")
    assert not signer.verify_attestation(token, SHA256, SIZE + 1).valid


def test_a_jws_attestation_by_another_key_is_invalid(signer: Signer, stranger: Signer) -> None:
    verification = signer.verify_attestation(stranger.sign_attestation(SHA256, SIZE, SIGNED_AT), SHA256, SIZE)
    assert not verification.valid and verification.key_id == stranger.key_id
    assert "does not know" in (verification.error or "")
    forged = attestation_with(signer, {"iat": 1, "sha256": SHA256, "size": SIZE}, private_key=stranger._private_key)
    assert not signer.verify_attestation(forged, SHA256, SIZE).valid  # our kid, another key's signature


def test_a_rotated_out_keys_jws_attestation_still_verifies() -> None:
    old = new_key()
    token = Signer(old).sign_attestation(SHA256, SIZE, SIGNED_AT)
    verification = Signer(new_key(), previous=[old.public_key()]).verify_attestation(token, SHA256, SIZE)
    assert verification.valid and verification.key_id == key_id_of(old.public_key())
    assert not Signer(new_key()).verify_attestation(token, SHA256, SIZE).valid


def test_the_old_envelope_still_verifies_beside_the_jws(signer: Signer) -> None:
    envelope = signer.attest(bytes.fromhex(SHA256), SIGNED_AT_S)
    verification = signer.verify(bytes.fromhex(SHA256), envelope)
    assert (verification.valid, verification.kind, verification.signed_at) == (True, "attestation", SIGNED_AT_S)


def test_a_receipt_is_no_attestation_and_an_attestation_no_receipt(signer: Signer) -> None:
    receipt = signer.sign_receipt(claims_of(SHA256))
    assert not signer.verify_attestation(receipt, SHA256, SIZE).valid
    claims, _, error = signer.read_receipt(signer.sign_attestation(SHA256, SIZE, SIGNED_AT))
    assert claims is None and error


DEEP = 20_000


def hostile_attestations(signer: Signer) -> dict[str, str]:
    """Tokens that are no well-formed attestation of CONTENT: bad headers, and odd claims really signed."""
    typ, kid = ATTESTATION_TYPE, signer.key_id
    good = {"iss": "deepfake-detector", "iat": 1_773_500_000, "sha256": SHA256, "size": SIZE}

    def unsigned(header: bytes) -> str:
        return ".".join([b64url(header), b64url(json.dumps(good).encode()), b64url(b"\0" * 256)])

    def claims(**changes: object) -> str:
        return attestation_with(signer, {**good, **changes})

    return {
        "empty": "",
        "two parts": "a.b",
        "four parts": "a.b.c.d",
        "not base64": "!!!.e30.c2ln",
        "header is a list": unsigned(b"[1]"),
        "header is not UTF-8": unsigned(b"\xff\xfe"),
        "header nested 20000 deep": unsigned(b"[" * DEEP + b"]" * DEEP),
        "kid nested 20000 deep": unsigned(
            b'{"alg":"RS256","typ":"%s","kid":' % typ.encode() + b"[" * DEEP + b"]" * DEEP + b"}"
        ),
        "kid is a list": unsigned(json.dumps({"alg": "RS256", "typ": typ, "kid": [kid]}).encode()),
        "kid is a number": unsigned(json.dumps({"alg": "RS256", "typ": typ, "kid": 5}).encode()),
        "kid is missing": unsigned(json.dumps({"alg": "RS256", "typ": typ}).encode()),
        "no typ": attestation_with(signer, good, {"alg": "RS256", "kid": kid}),
        "a receipt's typ": attestation_with(signer, good, {"alg": "RS256", "kid": kid, "typ": RECEIPT_TYPE}),
        "alg none": unsigned(json.dumps({"alg": "none", "typ": typ, "kid": kid}).encode()),
        "alg is a list": unsigned(json.dumps({"alg": ["RS256"], "typ": typ, "kid": kid}).encode()),
        "crit holds a list": unsigned(json.dumps({"alg": "RS256", "typ": typ, "kid": kid, "crit": [["b64"]]}).encode()),
        "a forged signature": unsigned(json.dumps({"alg": "RS256", "typ": typ, "kid": kid}).encode()),
        "iat past year 9999": claims(iat=LAST_SECOND + 1),
        "iat is huge": claims(iat=10**30),
        "iat is negative": claims(iat=-1),
        "iat is a string": claims(iat="now"),
        "iat is true": claims(iat=True),
        "iat is a float": claims(iat=1e308),
        "sha256 is a number": claims(sha256=5),
        "sha256 is uppercase": claims(sha256=SHA256.upper()),
        "sha256 is an object": claims(sha256={"hex": SHA256}),
        "size is negative": claims(size=-1),
        "size is a string": claims(size="12"),
        "size is missing": attestation_with(signer, {k: v for k, v in good.items() if k != "size"}),
        "claims are a list": attestation_with(signer, [good]),
        "claims are null": attestation_with(signer, None),
        "claims hold NaN": claims(note=float("nan")),
        "claims nested 900 deep": claims(note=json.loads("[" * 900 + "]" * 900)),
    }


def test_hostile_jws_attestations_are_invalid_without_raising(signer: Signer) -> None:
    for name, token in hostile_attestations(signer).items():
        verification = signer.verify_attestation(token, SHA256, SIZE)
        assert not verification.valid and verification.error, name
        assert verification.kind == "jws-attestation", name


def test_the_client_checks_an_attestation_offline_with_the_pinned_keys(signer, stranger, tmp_path) -> None:
    file = tmp_path / "clip.mp4"
    file.write_bytes(CONTENT)
    pinned = {signer.key_id: signer.public_pem}
    token = signer.sign_attestation(SHA256, SIZE, SIGNED_AT)
    check = check_attestation(token, pinned, file)
    assert check.valid and check.key_id == signer.key_id and check.claims and check.claims["sha256"] == SHA256
    assert not check_attestation(stranger.sign_attestation(SHA256, SIZE, SIGNED_AT), pinned, file).valid
    file.write_bytes(CONTENT[:-1] + b"!")
    assert "another file" in (check_attestation(token, pinned, file).error or "")
    file.write_bytes(CONTENT)
    not_a_key = {signer.key_id: "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"}
    assert not check_attestation(token, not_a_key, file).valid
    for name, hostile in hostile_attestations(signer).items():
        check = check_attestation(hostile, pinned, file)
        assert not check.valid and check.error, name


# --- receipts -----------------------------------------------------------------------------------


def test_a_receipt_round_trips(signer: Signer) -> None:
    claims = claims_of()
    token = signer.sign_receipt(claims)
    assert receipt_header(token) == {"alg": "RS256", "kid": signer.key_id, "typ": RECEIPT_TYPE}
    assert signer.read_receipt(token) == (claims, signer.key_id, None)


def test_a_receipt_with_a_changed_claim_does_not_verify(signer: Signer) -> None:
    header, _, signature = signer.sign_receipt(claims_of()).split(".")
    changed = {**claims_of(), "result": "REAL"}
    payload = b64url(json.dumps(changed, sort_keys=True, separators=(",", ":")).encode())
    claims, key_id, error = signer.read_receipt(f"{header}.{payload}.{signature}")
    assert claims is None and key_id == signer.key_id and error


def test_a_receipt_signed_by_another_key_is_refused(signer: Signer, stranger: Signer) -> None:
    claims, key_id, error = signer.read_receipt(stranger.sign_receipt(claims_of()))
    assert claims is None and key_id == stranger.key_id and "does not know" in (error or "")


def test_a_receipt_with_another_algorithm_in_its_header_is_refused(signer: Signer) -> None:
    claims, _, error = signer.read_receipt(token_with_header({"alg": "none", "kid": signer.key_id}, signer))
    assert claims is None and error


@pytest.mark.parametrize(
    "kid",
    [["a", "b"], {"nested": {"deeper": 1}}, 42, None],
)
def test_a_receipt_whose_kid_is_not_a_string_is_an_error_not_an_exception(signer: Signer, kid: object) -> None:
    claims, key_id, error = signer.read_receipt(token_with_header({"alg": "RS256", "kid": kid}, signer))
    assert (claims, key_id) == (None, None)
    assert error and "kid" in error


def test_a_receipt_with_a_deeply_nested_header_is_an_error_not_an_exception(signer: Signer) -> None:
    nested = "[" * 5000 + json.dumps(signer.key_id) + "]" * 5000  # deeper than json.dumps itself could write
    header = b64url(f'{{"alg": "RS256", "kid": {nested}}}'.encode())
    claims, key_id, error = signer.read_receipt(f"{header}.e30.c2ln")
    assert (claims, key_id) == (None, None) and error


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "!!!.e30.c2ln", f"{b64url(b'[1]')}.e30.c2ln", "e30.e30.e30"])
def test_tokens_that_are_no_receipt_are_an_error_not_an_exception(signer: Signer, token: str) -> None:
    claims, _, error = signer.read_receipt(token)
    assert claims is None and error


@pytest.mark.parametrize(
    "claims",
    [
        {"iat": "now", "file": {"sha256": "ab"}},
        {"iat": True, "file": {"sha256": "ab"}},
        {"iat": LAST_SECOND + 1, "file": {"sha256": "ab"}},
        {"iat": -1, "file": {"sha256": "ab"}},
        {"iat": 1, "file": "ab"},
        {"iat": 1, "file": {"sha256": 12}},
        [1, 2],
    ],
)
def test_a_signed_receipt_that_is_not_well_formed_is_an_error(signer: Signer, claims: object) -> None:
    token = signer.sign_receipt(claims)  # type: ignore[arg-type]  # a list, on purpose
    read, key_id, error = signer.read_receipt(token)
    assert read is None and key_id == signer.key_id
    assert error and "well-formed" in error


# --- strict_json / date_of ----------------------------------------------------------------------


def nested_lists(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_strict_json_allows_nesting_up_to_the_limit() -> None:
    assert strict_json(nested_lists(MAX_RECEIPT_DEPTH)) is not None


def test_strict_json_refuses_one_level_more() -> None:
    with pytest.raises(ValueError, match="nested deeper"):
        strict_json(nested_lists(MAX_RECEIPT_DEPTH + 1))


def test_strict_json_counts_object_nesting_too() -> None:
    deep = b'{"a":' * (MAX_RECEIPT_DEPTH + 1) + b"{}" + b"}" * (MAX_RECEIPT_DEPTH + 1)
    with pytest.raises(ValueError):
        strict_json(deep)


def test_strict_json_of_a_huge_nesting_raises_one_of_malformed() -> None:
    with pytest.raises(MALFORMED):
        strict_json(nested_lists(100_000))


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b'{"x": -Infinity}', b'"\\ud800"', b"{", b"\xff"])
def test_strict_json_refuses_what_cannot_be_answered_as_json(raw: bytes) -> None:
    with pytest.raises(MALFORMED):
        strict_json(raw)


def test_strict_json_returns_ordinary_json() -> None:
    assert strict_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (LAST_SECOND, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (1_773_500_000.5, datetime.fromtimestamp(1_773_500_000.5, UTC)),
    ],
)
def test_date_of_within_bounds(seconds: float, expected: datetime) -> None:
    assert date_of(seconds) == expected


@pytest.mark.parametrize("seconds", [-1, -0.001, LAST_SECOND + 1, 2**64, float("inf"), float("-inf"), float("nan")])
def test_date_of_out_of_bounds_is_none(seconds: float) -> None:
    assert date_of(seconds) is None


# --- receipts.frames_digest / reissued_claims ---------------------------------------------------


def test_frames_digest_is_sha256_of_the_canonical_json() -> None:
    expected = hashlib.sha256(b"[[0,0.25],[3,null],[6,0.123457]]").hexdigest()
    assert frames_digest([(0, 0.25), (3, None), (6, 0.1234567)]) == expected


def test_frames_digest_tells_no_face_from_a_zero_score() -> None:
    assert frames_digest([(0, None)]) != frames_digest([(0, 0.0)])


def test_frames_digest_ignores_differences_below_the_sixth_place() -> None:
    assert frames_digest([(0, 0.25), (1, 0.5)]) == frames_digest([(0, 0.25 + 4e-8), (1, 0.5 - 9e-8)])


def test_frames_digest_sees_a_change_in_the_sixth_place() -> None:
    assert frames_digest([(0, 0.25)]) != frames_digest([(0, 0.250001)])


def test_frames_digest_depends_on_frame_indices_and_order() -> None:
    assert frames_digest([(0, 0.25), (1, 0.5)]) != frames_digest([(1, 0.25), (0, 0.5)])


def test_frames_digest_of_numpy_scalars_equals_that_of_python_numbers() -> None:
    assert frames_digest([(np.int64(3), np.float32(0.25))]) == frames_digest([(3, 0.25)])


def test_reissued_claims_replace_only_the_time(signer: Signer) -> None:
    stored = signer.sign_receipt({**claims_of(), "note": "café ✓", "frames_digest": "ab" * 32})
    reissued = reissued_claims(stored, datetime(2030, 1, 2, 3, 4, 5, 900000, tzinfo=UTC))
    original, _, _ = signer.read_receipt(stored)
    assert original is not None
    assert reissued["iat"] == int(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp())
    assert {k: v for k, v in reissued.items() if k != "iat"} == {k: v for k, v in original.items() if k != "iat"}


def test_reissued_claims_sign_and_read_back(signer: Signer) -> None:
    reissued = reissued_claims(signer.sign_receipt(claims_of()), datetime(2030, 1, 1, tzinfo=UTC))
    claims, _, error = signer.read_receipt(signer.sign_receipt(reissued))
    assert error is None and claims == reissued


def test_the_key_set_verifies_a_receipt_with_any_jws_library() -> None:
    """/integrity/jwks.json: a receipt checks against the JWK whose kid it names (joserfc here)."""
    from joserfc import jws
    from joserfc.jwk import KeySet

    old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = Signer(rsa.generate_private_key(public_exponent=65537, key_size=2048), previous=[old.public_key()])
    key_set = signer.jwks()
    assert [key["kid"] for key in key_set["keys"]] == list(signer.public_keys)
    assert all(key["alg"] == "RS256" and key["use"] == "sig" and "d" not in key for key in key_set["keys"])
    token = signer.sign_receipt({"iat": 1, "file": {"sha256": "ab"}})
    verified = jws.deserialize_compact(token, KeySet.import_key_set(key_set), algorithms=["RS256"])
    assert json.loads(verified.payload) == {"file": {"sha256": "ab"}, "iat": 1}
