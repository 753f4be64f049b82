"""Sign / verify over real HTTP: the JWS attestation (checked offline with any JWS library and the
published key set), the deprecated envelope beside it, and signatures in plain PKCS#1 v1.5 SHA-256
(the seed's)."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from datetime import UTC, datetime

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jws
from joserfc.jwk import KeySet

from preprocess_service.integrity import KEY_FILE, load_signer
from preprocess_service.settings import Settings
from testing.server import post_file, running_service

PAYLOAD = bytes(range(256)) * 400  # any bytes: integrity does not care whether it is a video


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def service(demo_repository, keys_dir) -> str:
    with running_service(Settings(model_repository=demo_repository, keys_dir=keys_dir)) as url:
        yield url


def sign(service: str, payload: bytes = PAYLOAD) -> dict:
    response = post_file(service, payload, "/integrity/sign", filename="clip.mp4")
    assert response.status_code == 200, response.text
    return response.json()


def verify(service: str, payload: bytes, signature: str) -> httpx.Response:
    return post_file(service, payload, "/integrity/verify", filename="clip.mp4", data={"signature_base64": signature})


def verify_attestation(service: str, payload: bytes, attestation: str) -> httpx.Response:
    return post_file(service, payload, "/integrity/verify", filename="clip.mp4", data={"attestation": attestation})


def test_sign_then_verify_is_valid(service):
    signed = sign(service)
    assert signed["sha256_hex"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert signed["video_filename"] == "clip.mp4"
    assert signed["attestation"].count(".") == 2 and signed["signature_base64"]  # the JWS, and the old envelope
    verified = verify_attestation(service, PAYLOAD, signed["attestation"]).json()
    assert verified["valid"] is True and verified["key_id"] == signed["key_id"] and verified["error"] is None
    assert verified["kind"] == "jws-attestation" and verified["signed_at"] == signed["signed_at"]
    verified = verify(service, PAYLOAD, signed["signature_base64"]).json()  # deprecated, still verifies
    assert verified["valid"] is True and verified["key_id"] == signed["key_id"]
    assert verified["kind"] == "attestation" and verified["signed_at"] == signed["signed_at"]


def test_one_changed_byte_is_invalid(service):
    signed = sign(service)
    tampered = bytearray(PAYLOAD)
    tampered[1000] ^= 0x01
    verified = verify(service, bytes(tampered), signed["signature_base64"])
    assert verified.status_code == 200 and verified.json()["valid"] is False
    verified = verify_attestation(service, bytes(tampered), signed["attestation"])
    assert verified.status_code == 200 and verified.json()["valid"] is False
    assert "another file" in verified.json()["error"]


def test_the_attestation_checks_offline_with_the_published_key_set(service):
    """A third party needs only /integrity/jwks.json and any JWS library (joserfc here)."""
    signed = sign(service)
    key_set = KeySet.import_key_set(httpx.get(service + "/integrity/jwks.json").json())
    token = jws.deserialize_compact(signed["attestation"], key_set, algorithms=["RS256"])
    assert token.protected == {"alg": "RS256", "kid": signed["key_id"], "typ": "deepfake-attestation+jws"}
    claims = json.loads(token.payload)
    assert claims["sha256"] == hashlib.sha256(PAYLOAD).hexdigest() and claims["size"] == len(PAYLOAD)
    assert datetime.fromtimestamp(claims["iat"], UTC).isoformat() == signed["signed_at"]


def test_verify_wants_exactly_one_of_attestation_and_signature(service):
    signed = sign(service)
    both = {"attestation": signed["attestation"], "signature_base64": signed["signature_base64"]}
    response = post_file(service, PAYLOAD, "/integrity/verify", data=both)
    assert response.status_code == 422 and "not both" in response.json()["error"]["message"]
    garbage = verify_attestation(service, PAYLOAD, "not.a.jws")
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "malformed_token"  # unreadable
    misplaced = verify(service, PAYLOAD, signed["attestation"])  # the JWS in the old field: says where it goes
    assert misplaced.status_code == 400 and "'attestation' field" in misplaced.json()["error"]["message"]


def test_malformed_base64_is_400(service):
    response = verify(service, PAYLOAD, "not base64 at all!!")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature_encoding"


def test_wrong_length_signature_is_invalid_with_a_reason(service):
    body = verify(service, PAYLOAD, base64.b64encode(b"short").decode()).json()
    assert body["valid"] is False and "5 bytes" in body["error"]


@pytest.mark.parametrize(
    "reshape",
    [
        lambda s: "\n".join(s[i : i + 64] for i in range(0, len(s), 64)),  # line-wrapped (PEM/mail style)
        lambda s: s.replace("+", "-").replace("/", "_").rstrip("="),  # URL-safe, unpadded
        lambda s: f"  {s}\r\n",
    ],
)
def test_signatures_in_other_base64_shapes_verify(service, reshape):
    signed = sign(service)["signature_base64"]
    assert verify(service, PAYLOAD, reshape(signed)).json()["valid"] is True


def test_the_attestation_binds_time_and_key(service):
    """Change the signing time or the key id inside the envelope: no longer valid."""
    envelope = bytearray(base64.b64decode(sign(service)["signature_base64"]))
    assert envelope[:4] == b"DFA1"
    later = bytearray(envelope)
    later[43] ^= 0x01  # one millisecond later
    assert verify(service, PAYLOAD, base64.b64encode(bytes(later)).decode()).json()["valid"] is False
    other_key = bytearray(envelope)
    other_key[4] ^= 0x01
    body = verify(service, PAYLOAD, base64.b64encode(bytes(other_key)).decode()).json()
    assert body["valid"] is False and "does not know" in body["error"]


def test_missing_signature_field_is_422(service):
    response = post_file(service, PAYLOAD, "/integrity/verify")
    assert response.status_code == 422
    assert (
        "attestation" in response.json()["error"]["message"]
        and "signature_base64" in response.json()["error"]["message"]
    )


def test_attestation_checks_offline_with_the_published_public_key(service):
    """A third party needs only the public key: PKCS#1 v1.5 SHA-256 over prefix + file hash + time + key id."""
    published = httpx.get(service + "/integrity/public-key").json()
    public_key = serialization.load_pem_public_key(published["public_key_pem"].encode())
    envelope = base64.b64decode(sign(service)["signature_base64"])
    key_id, signed_at_ms, signature = envelope[4:36], envelope[36:44], envelope[44:]
    payload = b"deepfake-attestation-v1\0" + hashlib.sha256(PAYLOAD).digest() + signed_at_ms + key_id
    public_key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())  # raises if not
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert published["key_id"] == hashlib.sha256(der).hexdigest() == key_id.hex()


def test_a_signature_of_a_seed_style_key_verifies(tmp_path, demo_repository):
    """A key mounted as a secret (DEEPFAKE_SIGNING_KEY) signs and verifies like one made here."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem_path = tmp_path / "seed_key.pem"
    pem_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    seed_signature = key.sign(PAYLOAD, padding.PKCS1v15(), hashes.SHA256())  # as the original signed
    settings = Settings(model_repository=demo_repository, signing_key=pem_path, keys_dir=tmp_path / "unused")
    with running_service(settings) as url:
        body = verify(url, PAYLOAD, base64.b64encode(seed_signature).decode()).json()
        assert body["valid"] is True and body["kind"] == "legacy"
    assert not (tmp_path / "unused").exists()


def test_rotated_keys_still_verify_and_are_published(tmp_path, demo_repository):
    """Sign with key A; rotate to key B with A's public half kept: A's attestations still verify."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]
    for name, key in zip("ab", keys, strict=True):
        (tmp_path / f"{name}.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    (tmp_path / "previous").mkdir()
    (tmp_path / "previous/a.pem").write_bytes(
        keys[0].public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with running_service(
        Settings(model_repository=demo_repository, signing_key=tmp_path / "a.pem", keys_dir=tmp_path / "k")
    ) as url:
        old = sign(url)
    with running_service(
        Settings(
            model_repository=demo_repository,
            signing_key=tmp_path / "b.pem",
            keys_dir=tmp_path / "k",
            previous_keys_dir=tmp_path / "previous",
        )
    ) as url:
        body = verify(url, PAYLOAD, old["signature_base64"]).json()
        assert body["valid"] is True and body["key_id"] == old["key_id"]
        body = verify_attestation(url, PAYLOAD, old["attestation"]).json()
        assert body["valid"] is True and body["key_id"] == old["key_id"] and body["kind"] == "jws-attestation"
        listing = httpx.get(url + "/integrity/public-keys").json()
        assert listing["active_key_id"] != old["key_id"]
        assert {k["key_id"] for k in listing["keys"]} == {old["key_id"], listing["active_key_id"]}
        assert sign(url)["key_id"] == listing["active_key_id"]


def test_generated_key_is_private_and_never_regenerated(keys_dir, service):
    path = keys_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    assert load_signer(None, keys_dir).key_id == httpx.get(service + "/integrity/public-key").json()["key_id"]
    assert path.read_bytes() == first
