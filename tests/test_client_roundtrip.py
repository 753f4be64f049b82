"""``deepfake-client`` as a new user runs it, in its own process against the real service over HTTP:
receipts saved by ``predict --save-receipts`` and checked later by ``receipt verify`` with only the
files the client wrote, the service stopped; the public keys pinned on first use (trust on first
use, a changed key refused); ``csv --out`` saying what it wrote; refusals in their own column;
non-video files skipped with a word; the history's model column and its model filters.

Every subprocess gets its own key store (DEEPFAKE_CLIENT_KEYS, HOME and XDG_CONFIG_HOME under
tmp_path): a test never reads or writes the user's ``~/.config``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import deepfake_client.__main__ as cli
from deepfake_client import DeepfakeClient
from preprocess_service.settings import Settings
from testing.server import running_service


def client_cli(keys: Path | None, *argv: str, home: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m deepfake_client ARGV`` in its own process, output not a terminal, keys in ``keys``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"FORCE_COLOR", "TTY_COMPATIBLE", "DEEPFAKE_URL", "DEEPFAKE_API_KEY", "DEEPFAKE_CLIENT_KEYS"}
    }
    env.update(TERM="dumb", PYTHONIOENCODING="utf-8")
    if keys is not None:
        env["DEEPFAKE_CLIENT_KEYS"] = str(keys)
    if home is not None:
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    return subprocess.run(
        [sys.executable, "-m", "deepfake_client", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line a problem is reported with (exit 1, nothing on stdout, no traceback)."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-3000:]
    assert done.returncode == 1, output[-3000:]
    assert done.stdout == "", output[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output[-3000:]
    return lines[0]


def verdict(done: subprocess.CompletedProcess) -> dict:
    """A check's verdict: the one JSON line on standard output."""
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout + done.stderr
    return json.loads(lines[0])


def table(stdout: str) -> tuple[list[str], list[list[str]]]:
    """A rich table's header cells and the first line of each row's cells."""
    header: list[str] | None = None
    rows: list[list[str]] = []
    for line in stdout.splitlines():
        separator = "┃" if "┃" in line else "│" if "│" in line else None
        if separator is None:
            continue
        cells = [cell.strip() for cell in line.strip().strip(separator).split(separator)]
        if separator == "┃" and header is None:
            header = cells
        elif separator == "│" and cells[0]:  # a wrapped cell's continuation lines have an empty first cell
            rows.append(cells)
    assert header is not None, stdout
    return header, rows


def service_settings(repository: Path, folder: Path) -> Settings:
    return Settings(
        model_repository=repository,
        keys_dir=folder / "service_keys",
        database_url=f"sqlite:///{folder}/history.sqlite3",
    )


def service_keys(url: str) -> dict[str, str]:
    listing = httpx.get(url + "/integrity/public-keys", timeout=30).json()
    return {entry["key_id"]: entry["public_key_pem"] for entry in listing["keys"]}


# ---- the round trip: predict with the service up, verify with it stopped ----


@dataclass(frozen=True)
class RoundTrip:
    url: str  # where the service was: nothing listens there any more
    video: Path
    receipts: Path  # what --save-receipts wrote
    predict_json: Path  # predict --json's standard output, as a user saves it
    keys: Path  # the key store predict pinned the public keys into
    service_keys: dict[str, str]
    predict_stderr: str


@pytest.fixture(scope="module")
def round_trip(demo_repository: Path, seed_videos: list[Path], module_folder: Callable[[str], Path]) -> RoundTrip:
    folder = module_folder("round_trip")
    video = folder / "video.mp4"
    shutil.copy(seed_videos[0], video)
    receipts, keys = folder / "receipts", folder / "keys.json"
    with running_service(service_settings(demo_repository, folder)) as url:
        listed = service_keys(url)
        done = client_cli(keys, "--url", url, "predict", str(video), "--json", "--save-receipts", str(receipts))
        assert done.returncode == 0, done.stdout + done.stderr
    (folder / "answers.json").write_text(done.stdout)
    return RoundTrip(url, video, receipts, folder / "answers.json", keys, listed, done.stderr)


def test_predict_saves_each_answer_and_its_receipt_and_pins_the_keys(round_trip):
    answers = json.loads(round_trip.predict_json.read_text())  # --json's output is still JSON alone
    answer = answers[str(round_trip.video)]
    assert sorted(p.name for p in round_trip.receipts.iterdir()) == ["video.answer.json", "video.receipt.jws"]
    assert json.loads((round_trip.receipts / "video.answer.json").read_text()) == answer
    assert (round_trip.receipts / "video.receipt.jws").read_text().strip() == answer["receipt"]
    assert json.loads(round_trip.keys.read_text()) == round_trip.service_keys  # key id -> PEM, pinned
    assert str(round_trip.receipts) in round_trip.predict_stderr and str(round_trip.keys) in round_trip.predict_stderr


def test_the_service_is_stopped(round_trip):
    with pytest.raises(httpx.ConnectError):
        httpx.get(round_trip.url + "/healthz", timeout=5)


def verify_saved(round_trip, answer: Path) -> subprocess.CompletedProcess:
    """``receipt verify VIDEO @saved-receipt --answer ANSWER``, as the user types it."""
    receipt = "@" + str(round_trip.receipts / "video.receipt.jws")
    return client_cli(
        round_trip.keys,
        "--url",
        round_trip.url,
        "receipt",
        "verify",
        str(round_trip.video),
        receipt,
        "--answer",
        str(answer),
    )


def test_the_saved_receipt_verifies_offline_with_the_saved_answer(round_trip):
    done = verify_saved(round_trip, round_trip.receipts / "video.answer.json")
    result = verdict(done)
    assert done.returncode == 0 and result["valid"] is True, done.stdout + done.stderr
    assert result["key_id"] in round_trip.service_keys
    assert done.stderr == ""  # the pinned keys: nothing fetched, nothing to say


def test_predict_json_output_is_an_answer_verify_accepts(round_trip):
    """The ``{path: answer}`` that ``predict --json`` prints: FILE's entry is the answer (it was refused)."""
    done = verify_saved(round_trip, round_trip.predict_json)
    assert done.returncode == 0 and verdict(done)["valid"] is True, done.stdout + done.stderr


@pytest.mark.parametrize("shape", ["answer.json", "predict --json output", "token"])
def test_the_receipt_may_be_given_as_the_answer_or_the_token_itself(round_trip, shape):
    given = {
        "answer.json": str(round_trip.receipts / "video.answer.json"),
        "predict --json output": str(round_trip.predict_json),
        "token": (round_trip.receipts / "video.receipt.jws").read_text().strip(),
    }[shape]
    done = client_cli(round_trip.keys, "--url", round_trip.url, "receipt", "verify", str(round_trip.video), given)
    assert done.returncode == 0 and verdict(done)["valid"] is True, done.stdout + done.stderr


def test_one_changed_byte_in_the_video_is_invalid(round_trip, tmp_path):
    changed = tmp_path / "video.mp4"  # the same name: predict --json's entry is still found by name
    content = bytearray(round_trip.video.read_bytes())
    content[len(content) // 2] ^= 0x01
    changed.write_bytes(bytes(content))
    for answer in (round_trip.receipts / "video.answer.json", round_trip.predict_json):
        done = client_cli(
            round_trip.keys,
            "--url",
            round_trip.url,
            "receipt",
            "verify",
            str(changed),
            "@" + str(round_trip.receipts / "video.receipt.jws"),
            "--answer",
            str(answer),
        )
        result = verdict(done)
        assert done.returncode == 1 and result["valid"] is False, done.stdout + done.stderr
        assert "another file" in result["error"]


def test_an_answer_file_without_this_file_says_so_in_one_line(round_trip, tmp_path):
    other = tmp_path / "other.mp4"
    shutil.copy(round_trip.video, other)
    done = client_cli(
        round_trip.keys,
        "--url",
        round_trip.url,
        "receipt",
        "verify",
        str(other),
        "@" + str(round_trip.receipts / "video.receipt.jws"),
        "--answer",
        str(round_trip.predict_json),
    )
    line = one_error_line(done)
    assert "other.mp4" in line and "video.mp4" in line  # what was asked for, and what the file holds


def test_a_receipt_file_that_is_not_there_says_so_in_one_line(round_trip):
    for given in ("@" + str(round_trip.receipts / "gone.receipt.jws"), str(round_trip.receipts / "gone.answer.json")):
        line = one_error_line(
            client_cli(round_trip.keys, "--url", round_trip.url, "receipt", "verify", str(round_trip.video), given)
        )
        assert "gone." in line and "No such file" in line


def test_files_that_share_a_name_get_receipts_that_do_not_overwrite_each_other():
    names = cli._receipt_names([Path("a/clip.mp4"), Path("a/clip.mov"), Path("b/clip.mp4"), Path("a/other.mp4")])
    assert names == {
        Path("a/clip.mp4"): "clip.mp4",
        Path("a/clip.mov"): "clip.mov",
        Path("b/clip.mp4"): "clip.mp4-2",
        Path("a/other.mp4"): "other",
    }


def test_a_receipt_by_a_key_not_pinned_is_invalid_and_says_how_to_pin(round_trip, tmp_path):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = stranger.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = stranger.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    store = tmp_path / "keys.json"
    store.write_text(json.dumps({hashlib.sha256(der).hexdigest(): pem.decode()}))
    done = client_cli(
        store,
        "--url",
        round_trip.url,  # nothing listens: the pinned keys are used, never the service
        "receipt",
        "verify",
        str(round_trip.video),
        "@" + str(round_trip.receipts / "video.receipt.jws"),
    )
    result = verdict(done)
    assert done.returncode == 1 and result["valid"] is False
    assert str(store) in result["error"] and "keys save" in result["error"]


# ---- with the service running ----


@pytest.fixture(scope="module")
def service(demo_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_service(service_settings(demo_repository, tmp_path_factory.mktemp("client_cli"))) as url:
        yield url


def test_keys_save_pins_the_keys_and_refuses_a_changed_one(service, tmp_path):
    store = tmp_path / "pinned" / "keys.json"
    done = client_cli(None, "--url", service, "keys", "save", "--out", str(store), home=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = service_keys(service)
    assert json.loads(store.read_text()) == listed
    assert str(store) in done.stdout + done.stderr
    assert client_cli(None, "--url", service, "keys", "save", "--out", str(store), home=tmp_path).returncode == 0

    key_id = next(iter(listed))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    forged = stranger.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    store.write_text(json.dumps({key_id: forged.decode()}))
    before = store.read_text()
    line = one_error_line(client_cli(None, "--url", service, "keys", "save", "--out", str(store), home=tmp_path))
    assert key_id in line and str(store) in line
    assert store.read_text() == before  # nothing replaced
    # predict --save-receipts pins the same way: it refuses too, loudly
    line = one_error_line(
        client_cli(store, "--url", service, "predict", str(tmp_path / "none.mp4"), "--save-receipts", str(tmp_path))
    )
    assert key_id in line


def test_keys_go_to_the_env_store_or_the_config_folder(service, tmp_path):
    env_store = tmp_path / "env.json"
    assert client_cli(env_store, "--url", service, "keys", "save", home=tmp_path).returncode == 0
    assert json.loads(env_store.read_text()) == service_keys(service)
    assert client_cli(None, "--url", service, "keys", "save", home=tmp_path).returncode == 0
    assert json.loads((tmp_path / ".config" / "deepfake-client" / "keys.json").read_text()) == service_keys(service)
    flag_store = tmp_path / "flag.json"
    done = client_cli(env_store, "--url", service, "--keys", str(flag_store), "keys", "save", home=tmp_path)
    assert done.returncode == 0 and json.loads(flag_store.read_text()) == service_keys(service)


def test_verify_without_pinned_keys_fetches_them_and_says_so(service, seed_videos, tmp_path):
    with DeepfakeClient(service) as client:
        answer = client.predict(seed_videos[1])
    store = tmp_path / "nothing_pinned.json"
    done = client_cli(store, "--url", service, "receipt", "verify", str(seed_videos[1]), answer["receipt"])
    assert done.returncode == 0 and verdict(done)["valid"] is True, done.stdout + done.stderr
    assert "fetched" in done.stderr and service in done.stderr and "keys save" in done.stderr
    assert not store.exists()  # verify reads the store; keys save and predict --save-receipts write it


def test_csv_out_says_where_it_wrote_and_how_many_rows(service, seed_videos, tmp_path):
    out = tmp_path / "frames.csv"
    done = client_cli(tmp_path / "keys.json", "--url", service, "csv", str(seed_videos[2]), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = len(out.read_text().splitlines()) - 1
    said = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(said) == 1 and str(out) in said[0] and f"{rows} rows" in said[0], said
    assert rows == 30


def test_predict_puts_refusals_in_their_own_column(service, seed_videos, tmp_path):
    video = tmp_path / "clip.mp4"
    shutil.copy(seed_videos[3], video)
    refused = tmp_path / "notes.mp4"
    refused.write_bytes(b"hello, not a video" * 100)
    done = client_cli(tmp_path / "keys.json", "--url", service, "predict", str(video), str(refused))
    assert done.returncode == 1, done.stdout + done.stderr
    header, rows = table(done.stdout)
    assert "error" in header, header
    cells = {row[0]: dict(zip(header, row, strict=False)) for row in rows}
    assert cells["notes.mp4"]["confidence"] == "" and cells["notes.mp4"]["error"].startswith("not_a_video")
    assert cells["clip.mp4"]["error"] == "" and cells["clip.mp4"]["result"] in {"FAKE", "REAL"}
    assert float(cells["clip.mp4"]["confidence"]) >= 0


def test_predict_skips_files_that_are_not_videos_and_says_which(service, seed_videos, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(seed_videos[4], folder / "clip.mp4")
    (folder / "notes.txt").write_text("not a video")
    (folder / "cover.jpg").write_bytes(b"\xff\xd8 not a video either")
    keys = tmp_path / "keys.json"
    for given in ([str(folder)], sorted(str(p) for p in folder.iterdir())):  # a folder, or a shell glob's expansion
        done = client_cli(keys, "--url", service, "predict", *given)
        assert done.returncode == 0, done.stdout + done.stderr
        skipped = [line for line in done.stderr.splitlines() if "skipped" in line]
        assert len(skipped) == 1 and "skipped 2 files" in skipped[0], done.stderr
        assert "cover.jpg" in skipped[0] and "notes.txt" in skipped[0] and "--all-files" in skipped[0]
        assert [row[0] for row in table(done.stdout)[1]] == ["clip.mp4"]
    done = client_cli(keys, "--url", service, "predict", str(folder), "--all-files")
    assert done.returncode == 1 and "skipped" not in done.stderr  # sent, and refused by the service
    assert sorted(row[0] for row in table(done.stdout)[1]) == ["clip.mp4", "cover.jpg", "notes.txt"]


def test_history_shows_the_model_of_each_analysis(service, seed_videos, tmp_path):
    with DeepfakeClient(service) as client:
        answer = client.predict(seed_videos[0], refresh=True)
    done = client_cli(tmp_path / "keys.json", "--url", service, "history", "--sha256", answer["sha256_hex"])
    assert done.returncode == 0, done.stdout + done.stderr
    header, rows = table(done.stdout)
    assert "model" in header, header
    row = dict(zip(header, rows[0], strict=False))
    checkpoint = answer["model"]["checkpoint_sha256"]  # the demo's is no hash: "none (untrained demo, seed 0)"
    assert row["model"] == f"{checkpoint} {answer['model']['precision']}", row


def test_history_passes_the_model_filters_as_query_parameters(monkeypatch, capsys):
    """Unit level: the filters reach GET /analyses as ``checkpoint_sha256`` and ``precision``."""
    asked: list[httpx.Request] = []
    item = {
        "id": "a1",
        "created_at": "2025-01-01T00:00:00+00:00",
        "filename": "clip.mp4",
        "size": 1,
        "sha256_hex": "ab" * 32,
        "result": "REAL",
        "p_fake": 0.25,
        "rule": "sequence",
        "precision": "int8",
        "checkpoint_sha256": "0123456789abcdef" * 4,
        "untrained_demo": False,
        "processing_time_sec": 1.0,
    }

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json={"items": [item], "total": 1, "page": 1, "per_page": 20})

    monkeypatch.setattr(
        cli, "DeepfakeClient", lambda url, api_key: DeepfakeClient(url, api_key, transport=httpx.MockTransport(answer))
    )
    code = cli.main(["history", "--checkpoint", item["checkpoint_sha256"], "--precision", "int8", "--verdict", "REAL"])
    out = capsys.readouterr().out
    assert code == 0
    params = asked[0].url.params
    assert params["checkpoint_sha256"] == item["checkpoint_sha256"] and params["precision"] == "int8"
    assert params["verdict"] == "REAL"
    assert "0123456789ab int8" in out and "0123456789abc" not in out  # the hash shortened to 12

    cli.main(["history"])
    assert "checkpoint_sha256" not in asked[-1].url.params and "precision" not in asked[-1].url.params
    with pytest.raises(SystemExit) as usage:
        cli.main(["history", "--precision", "fp16"])
    assert usage.value.code == 2
