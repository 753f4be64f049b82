"""model_contract.repository_digests: the model repository is code, so the cluster must load exactly
the files the export listed, checked against a digest pinned outside the bucket.

A small fake repository per test (no model export); the CLI is run as the init container runs it,
and coreutils' ``sha256sum -c`` is run on the written list as a real interop check.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_contract.repository_digests import (
    ENV_DIGEST,
    EXIT_NO_PIN,
    EXIT_NOT_VERIFIED,
    LIST_NAME,
    digest_of_list,
    verify,
    write_digest_list,
)

ROOT = Path(__file__).resolve().parents[2]
FILES = {
    "deepfake_backbone/config.pbtxt": b'name: "deepfake_backbone"\nplatform: "onnxruntime_onnx"\n',
    "deepfake_backbone/configs/cpu.pbtxt": b'name: "deepfake_backbone"\ninstance_group [{ kind: KIND_CPU }]\n',
    "deepfake_backbone/1/model.onnx": bytes(range(256)) * 64,
    "deepfake_temporal/config.pbtxt": b'name: "deepfake_temporal"\n',
    "deepfake_temporal/labels.txt": b"FAKE\nREAL\n",
}


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "model_repository"
    for relative, content in FILES.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return root


@pytest.fixture
def pinned(repository: Path) -> str:
    return digest_of_list(write_digest_list(repository))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != ENV_DIGEST}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "model_contract.repository_digests", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=environment,
    )


def test_written_list_is_sorted_sha256sum_format_of_every_file(repository: Path, pinned: str) -> None:
    text = (repository / LIST_NAME).read_text()
    expected = "".join(f"{hashlib.sha256(FILES[name]).hexdigest()}  {name}\n" for name in sorted(FILES))
    assert text == expected
    assert pinned == hashlib.sha256(text.encode()).hexdigest()
    assert write_digest_list(repository) == repository / LIST_NAME  # rewriting skips the list itself
    assert digest_of_list(repository / LIST_NAME) == pinned


def test_coreutils_sha256sum_accepts_the_list(repository: Path, pinned: str) -> None:
    sha256sum = shutil.which("sha256sum")
    if sha256sum is None:
        pytest.skip("coreutils sha256sum is not installed")
    completed = subprocess.run(
        [sha256sum, "--strict", "-c", LIST_NAME], cwd=repository, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.count(": OK") == len(FILES)


def test_cli_write_prints_digest_and_where_to_pin_it(repository: Path) -> None:
    completed = cli("write", str(repository))
    assert completed.returncode == 0, completed.stderr
    digest = digest_of_list(repository / LIST_NAME)
    assert completed.stdout.splitlines() == [
        f"wrote {repository / LIST_NAME}: {len(FILES)} files, list sha256 {digest}",
        f'pin it: ConfigMap triton-model-source, key MODEL_REPOSITORY_SHA256SUMS_DIGEST: "{digest}"',
    ]


def test_the_right_repository_verifies(repository: Path, pinned: str) -> None:
    assert verify(repository, pinned) == []
    completed = cli("verify", str(repository), "--expect-sha256", pinned)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"verified: {len(FILES)} files, list sha256 {pinned}\n"
    from_environment = cli("verify", str(repository), env={ENV_DIGEST: pinned.upper() + "\n"})
    assert from_environment.returncode == 0, from_environment.stderr


def test_a_changed_config_fails_naming_it(repository: Path, pinned: str) -> None:
    config = repository / "deepfake_backbone/config.pbtxt"
    config.write_bytes(config.read_bytes() + b'backend: "python"\n')
    completed = cli("verify", str(repository), "--expect-sha256", pinned)
    assert completed.returncode == EXIT_NOT_VERIFIED
    lines = completed.stderr.splitlines()
    assert lines == [line for line in lines if line.startswith("model repository NOT verified: ")]
    assert any(
        "deepfake_backbone/config.pbtxt differs" in line
        and hashlib.sha256(FILES[config.relative_to(repository).as_posix()]).hexdigest()[:12] in line
        for line in lines
    ), completed.stderr
    assert completed.stdout == ""


@pytest.mark.parametrize(
    "extra", ["deepfake_backbone/1/libevil.so", "evil_model/config.pbtxt", ".hidden", "deepfake_temporal/2/model.onnx"]
)
def test_an_unlisted_extra_file_fails(repository: Path, pinned: str, extra: str) -> None:
    (repository / extra).parent.mkdir(parents=True, exist_ok=True)
    (repository / extra).write_bytes(b"\x7fELF")
    problems = verify(repository, pinned)
    assert len(problems) == 1 and extra in problems[0] and "not listed" in problems[0]
    assert cli("verify", str(repository), "--expect-sha256", pinned).returncode == EXIT_NOT_VERIFIED


def test_a_missing_file_fails(repository: Path, pinned: str) -> None:
    (repository / "deepfake_temporal/labels.txt").unlink()
    assert verify(repository, pinned) == ["deepfake_temporal/labels.txt is listed but missing"]
    completed = cli("verify", str(repository), "--expect-sha256", pinned)
    assert completed.returncode == EXIT_NOT_VERIFIED and "labels.txt is listed but missing" in completed.stderr


def test_a_rewritten_list_fails_against_the_pinned_digest(repository: Path, pinned: str) -> None:
    """Whoever can write the bucket changes a file *and* rewrites the list to match."""
    (repository / "deepfake_backbone/1/model.onnx").write_bytes(b"another model")
    (repository / "evil_model").mkdir()
    (repository / "evil_model/config.pbtxt").write_bytes(b'backend: "python"\n')
    rewritten = digest_of_list(write_digest_list(repository))
    assert verify(repository, rewritten) == []  # consistent with itself: proves nothing alone
    problems = verify(repository, pinned)
    assert len(problems) == 1 and "not the pinned" in problems[0] and pinned in problems[0]
    completed = cli("verify", str(repository), env={ENV_DIGEST: pinned})
    assert completed.returncode == EXIT_NOT_VERIFIED and "not the pinned" in completed.stderr


def test_no_pinned_digest_is_refused(repository: Path, pinned: str) -> None:
    completed = cli("verify", str(repository))
    assert completed.returncode == EXIT_NO_PIN == 2
    assert "no pinned digest: set MODEL_REPOSITORY_SHA256SUMS_DIGEST" in completed.stderr
    assert cli("verify", str(repository), env={ENV_DIGEST: ""}).returncode == EXIT_NO_PIN


def test_a_missing_list_or_malformed_pin_fails(repository: Path) -> None:
    assert "no SHA256SUMS" in verify(repository, "0" * 64)[0]
    write_digest_list(repository)
    assert "not a SHA-256" in verify(repository, "abc")[0]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (f"{'0' * 64}  ../outside.txt\n", "'..'"),
        (f"{'0' * 64}  /etc/passwd\n", "absolute path"),
        (f"{'0' * 64} deepfake_temporal/labels.txt\n", "malformed"),
        ("not a digest line\n", "malformed"),
        (f"{'0' * 64}  ./deepfake_temporal/labels.txt\n", "not a plain relative path"),
        (f"{'0' * 64}  {LIST_NAME}\n", "the list itself"),
        (f"{'0' * 64}  deepfake_temporal/labels.txt", "listed twice"),
    ],
)
def test_malformed_or_escaping_lines_fail(repository: Path, line: str, says: str) -> None:
    path = write_digest_list(repository)
    path.write_text(path.read_text() + line)
    problems = verify(repository, digest_of_list(path))
    assert any(says in problem for problem in problems), problems


def test_symlinks_are_refused_inside_or_outside_the_tree(repository: Path, pinned: str, tmp_path: Path) -> None:
    outside = tmp_path / "libevil.so"
    outside.write_bytes(b"\x7fELF")
    (repository / "deepfake_backbone/1/libevil.so").symlink_to(outside)
    (repository / "deepfake_alias").symlink_to(repository / "deepfake_temporal", target_is_directory=True)
    problems = verify(repository, pinned)
    assert sum("symlink" in problem for problem in problems) == 2, problems
    with pytest.raises(ValueError, match="symlink"):
        write_digest_list(repository)
    assert digest_of_list(repository / LIST_NAME) == pinned  # the refused write left the list as it was
    completed = cli("write", str(repository))
    assert completed.returncode == 1 and "symlink" in completed.stderr


def test_a_listed_file_swapped_for_a_symlink_fails(repository: Path, pinned: str) -> None:
    labels = repository / "deepfake_temporal/labels.txt"
    copy = repository.parent / "labels.txt"
    copy.write_bytes(labels.read_bytes())
    labels.unlink()
    labels.symlink_to(copy)  # same bytes through the link: still refused
    problems = verify(repository, pinned)
    assert problems and all("labels.txt" in problem for problem in problems)
    assert any("symlink" in problem for problem in problems)


def test_the_module_imports_without_torch() -> None:
    script = (
        "import sys; import model_contract.repository_digests; "
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
