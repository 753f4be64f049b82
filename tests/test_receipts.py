"""Signed analysis receipts, checked as a third party would: offline with the public key alone
(joserfc, not the service's code), and through POST /integrity/verify-receipt. A receipt verifies;
a changed byte in the file, a changed score, or another key fails it."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwk, jws
from joserfc.errors import JoseError

from preprocess_service.integrity import Signer
from preprocess_service.receipts import frames_digest
from preprocess_service.settings import Settings
from testing.server import post_file, running_service


@pytest.fixture(scope="module")
def service(demo_repository, tmp_path_factory):
    settings = Settings(model_repository=demo_repository, keys_dir=tmp_path_factory.mktemp("keys"))
    with running_service(settings) as url:
        yield url


@pytest.fixture(scope="module")
def answered(service, seed_videos):
    video = seed_videos[1]
    answer = post_file(service, video).json()
    keys = httpx.get(service + "/integrity/public-keys").json()
    return video, answer, keys


def offline_claims(token: str, public_keys: dict[str, str]) -> dict:
    """What a third party does: pick the key by kid, check the RS256 signature, read the claims."""
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    key = jwk.RSAKey.import_key(public_keys[header["kid"]])
    return json.loads(jws.deserialize_compact(token, key, algorithms=["RS256"]).payload)


def _public_keys(listing: dict) -> dict[str, str]:
    return {entry["key_id"]: entry["public_key_pem"] for entry in listing["keys"]}


def test_a_receipt_verifies_offline_and_says_what_the_answer_said(answered):
    video, answer, listing = answered
    claims = offline_claims(answer["receipt"], _public_keys(listing))
    assert claims["file"] == {"sha256": hashlib.sha256(video.read_bytes()).hexdigest(), "size": video.stat().st_size}
    assert claims["result"] == answer["result"] and claims["rule"] == answer["verdict_rule"]
    for rule, verdict in answer["verdicts"].items():
        assert claims["verdicts"][rule] == {
            "result": verdict["result"],
            "p_fake": verdict["p_fake"],
            "threshold": verdict["threshold"],
        }
    assert claims["frames_digest"] == frames_digest([(f["frame_index"], f["p_fake"]) for f in answer["frames"]])
    assert claims["model"]["checkpoint_sha256"] == answer["model"]["checkpoint_sha256"]
    assert claims["model"]["precision"] == "fp32" and claims["model"]["untrained_demo"] is True
    assert claims["model"]["plan"] == answer["model"]["plan"] != ""  # which blocks ran at which precision


def test_the_service_verifies_its_receipt_for_the_same_file(service, answered):
    video, answer, _ = answered
    verdict = post_file(service, video, "/integrity/verify-receipt", data={"receipt": answer["receipt"]}).json()
    assert verdict["valid"] is True and verdict["error"] is None
    assert verdict["claims"]["result"] == answer["result"]


def test_a_changed_byte_in_the_file_fails_it(service, answered):
    video, answer, _ = answered
    content = bytearray(video.read_bytes())
    content[len(content) // 2] ^= 0x01
    verdict = post_file(service, bytes(content), "/integrity/verify-receipt", data={"receipt": answer["receipt"]})
    assert verdict.json()["valid"] is False and "another file" in verdict.json()["error"]


def _with_claims(token: str, change) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    change(claims)
    encoded = base64.urlsafe_b64encode(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
    return ".".join([header, encoded.decode().rstrip("="), signature])


def test_a_changed_score_fails_it(service, answered):
    video, answer, listing = answered

    def flip(claims):
        claims["verdicts"]["sequence"]["p_fake"] = round(1 - claims["verdicts"]["sequence"]["p_fake"], 6)

    forged = _with_claims(answer["receipt"], flip)
    with pytest.raises(JoseError):
        offline_claims(forged, _public_keys(listing))
    verdict = post_file(service, video, "/integrity/verify-receipt", data={"receipt": forged}).json()
    assert verdict["valid"] is False and verdict["claims"] is None


def test_another_key_fails_it(service, answered):
    video, answer, listing = answered
    claims = offline_claims(answer["receipt"], _public_keys(listing))
    stranger = Signer(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    forged = stranger.sign_receipt(claims)  # same claims, someone else's key
    verdict = post_file(service, video, "/integrity/verify-receipt", data={"receipt": forged}).json()
    assert verdict["valid"] is False and "does not know" in verdict["error"]
    with pytest.raises(KeyError):  # its kid is none of this service's keys
        offline_claims(forged, _public_keys(listing))
    impostor = {entry: listing_pem for entry, listing_pem in _public_keys(listing).items()}
    impostor[stranger.key_id] = next(iter(_public_keys(listing).values()))  # the service's key under its kid
    with pytest.raises(JoseError):
        offline_claims(forged, impostor)


def test_the_csv_answer_carries_a_receipt_too(service, seed_videos):
    answer = post_file(service, seed_videos[0], "/predict_csv/?format=csv")
    token = answer.headers["X-Deepfake-Receipt"]
    listing = httpx.get(service + "/integrity/public-keys").json()
    claims = offline_claims(token, _public_keys(listing))
    rows = list(csv.reader(io.StringIO(answer.text)))[1:]
    scores = [(int(row[0]), None if row[4] == "" else float(row[4])) for row in rows]
    assert claims["frames_digest"] == frames_digest(scores)
    assert claims["file"]["sha256"] == hashlib.sha256(seed_videos[0].read_bytes()).hexdigest()
