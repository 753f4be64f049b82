"""deepfake-client and its Python API against the real service over HTTP: several files at once, CSV,
sign and verify, receipts checked offline (fetched keys, or a PEM file with no request at all), and
the history. Exit statuses are what scripts rely on."""

from __future__ import annotations

import json

import httpx
import pytest

from deepfake_client import DeepfakeClient, ServiceError
from deepfake_client.__main__ import main
from preprocess_service.settings import Settings
from testing.server import running_service


@pytest.fixture(scope="module")
def service(demo_repository, tmp_path_factory):
    folder = tmp_path_factory.mktemp("client")
    settings = Settings(
        model_repository=demo_repository,
        keys_dir=folder / "keys",
        database_url=f"sqlite:///{folder}/history.sqlite3",
    )
    with running_service(settings) as url:
        yield url


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_several_files_at_once_as_json(service, seed_videos, tmp_path, capsys):
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_bytes(b"hello, not a video" * 100)
    code, out, _ = run(
        capsys, "--url", service, "predict", str(seed_videos[0]), str(seed_videos[1]), str(not_a_video), "--json"
    )
    answers = json.loads(out)
    assert code == 1  # one file was refused
    assert answers[str(seed_videos[0])]["result"] in {"FAKE", "REAL"}
    assert answers[str(seed_videos[1])]["frames_analyzed"] == 30
    assert answers[str(not_a_video)]["error"]["code"] == "not_a_video"


def test_predict_as_a_table_says_the_demo_answered(service, seed_videos, capsys):
    code, out, _ = run(capsys, "--url", service, "predict", str(seed_videos[2]))
    assert code == 0 and seed_videos[2].name in out and "UNTRAINED DEMO" in out


def test_csv_sign_verify_and_receipts(service, seed_videos, tmp_path, capsys):
    video = seed_videos[3]
    code, _, _ = run(capsys, "--url", service, "csv", str(video), "--out", str(tmp_path / "frames.csv"))
    assert code == 0 and (tmp_path / "frames.csv").read_text().startswith("frame_index,frame_time_sec")

    code, out, err = run(capsys, "--url", service, "sign", str(video), "--out", str(tmp_path / "a.attestation.jws"))
    signed = json.loads(out)
    attestation, signature = signed["attestation"], signed["signature_base64"]
    assert code == 0 and (tmp_path / "a.attestation.jws").read_text().strip() == attestation and "wrote" in err
    code, out, _ = run(capsys, "--url", service, "verify", str(video), attestation)
    assert code == 0 and json.loads(out)["kind"] == "jws-attestation"
    assert run(capsys, "--url", service, "verify", str(video), "@" + str(tmp_path / "a.attestation.jws"))[0] == 0
    code, out, _ = run(capsys, "--url", service, "verify", str(video), signature)  # the deprecated envelope
    assert code == 0 and json.loads(out)["kind"] == "attestation"
    changed = tmp_path / "changed.mp4"
    changed.write_bytes(video.read_bytes()[:-1] + b"\x00")
    assert run(capsys, "--url", service, "verify", str(changed), attestation)[0] == 1
    assert run(capsys, "--url", service, "verify", str(changed), signature)[0] == 1

    with DeepfakeClient(service) as client:
        answer = client.predict(video)
    (tmp_path / "answer.json").write_text(json.dumps(answer))
    (tmp_path / "receipt.txt").write_text(answer["receipt"])
    code, out, _ = run(
        capsys,
        "--url",
        service,
        "receipt",
        "verify",
        str(video),
        "@" + str(tmp_path / "receipt.txt"),
        "--answer",
        str(tmp_path / "answer.json"),
    )
    assert code == 0 and json.loads(out)["valid"] is True
    assert json.loads(out)["claims"]["result"] == answer["result"]
    assert run(capsys, "--url", service, "receipt", "verify", str(changed), answer["receipt"])[0] == 1

    # fully offline: the public key from a file, and a URL where nothing listens
    pem = httpx.get(service + "/integrity/public-key").json()["public_key_pem"]
    (tmp_path / "key.pem").write_text(pem)
    code, out, _ = run(
        capsys,
        "--url",
        "http://127.0.0.1:9",
        "receipt",
        "verify",
        str(video),
        answer["receipt"],
        "--public-key",
        str(tmp_path / "key.pem"),
    )
    assert code == 0 and json.loads(out)["valid"] is True
    offline = ["--url", "http://127.0.0.1:9", "verify", "--offline", "--public-key", str(tmp_path / "key.pem")]
    code, out, _ = run(capsys, *offline, str(video), str(tmp_path / "a.attestation.jws"))
    assert code == 0 and json.loads(out)["valid"] is True and json.loads(out)["claims"]["size"] == video.stat().st_size
    code, out, _ = run(capsys, *offline, str(changed), attestation)
    assert code == 1 and "another file" in json.loads(out)["error"]
    forged_answer = {**answer, "frames": [{**answer["frames"][0], "p_fake": 0.123456}, *answer["frames"][1:]]}
    (tmp_path / "forged.json").write_text(json.dumps(forged_answer))
    code, out, _ = run(
        capsys,
        "--url",
        service,
        "receipt",
        "verify",
        str(video),
        answer["receipt"],
        "--answer",
        str(tmp_path / "forged.json"),
    )
    assert code == 1 and "per-frame" in json.loads(out)["error"]


def test_history_lists_what_was_analyzed(service, seed_videos, capsys):
    with DeepfakeClient(service) as client:
        answer = client.predict(seed_videos[4], refresh=True)
        found = client.history(sha256=answer["sha256_hex"])
    assert answer["history_id"] in [item["id"] for item in found["items"]]
    code, out, _ = run(capsys, "--url", service, "history", "--sha256", answer["sha256_hex"], "--json")
    assert code == 0 and json.loads(out)["total"] >= 1
    code, out, _ = run(capsys, "--url", service, "history")
    assert code == 0 and seed_videos[4].name in out


def test_the_api_raises_the_services_error_code(service, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with DeepfakeClient(service) as client, pytest.raises(ServiceError) as raised:
        client.predict(empty)
    assert raised.value.status == 400 and raised.value.code == "empty_file"
