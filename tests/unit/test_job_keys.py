"""The webhook key every process derives alike: from the mounted signing key where there is one (a
cluster's read-only pods write nothing), else from a key file made once (a laptop)."""

from __future__ import annotations

import os

from preprocess_service.jobs.service import webhook_key
from preprocess_service.jobs.webhooks import owner_secret
from preprocess_service.settings import Settings


def test_processes_with_the_same_signing_key_share_the_webhook_key_and_write_nothing(tmp_path):
    pem = tmp_path / "signing_key.pem"
    pem.write_bytes(b"stands for a mounted PEM: only its bytes are read")
    front = Settings(signing_key=pem, keys_dir=tmp_path / "front-keys")
    worker = Settings(signing_key=pem, keys_dir=tmp_path / "worker-keys")
    assert webhook_key(front) == webhook_key(worker)
    assert not (tmp_path / "front-keys").exists() and not (tmp_path / "worker-keys").exists()
    other = tmp_path / "rotated.pem"
    other.write_bytes(pem.read_bytes() + b"x")
    assert webhook_key(Settings(signing_key=other)) != webhook_key(front), "a rotated signing key rotates it"
    assert owner_secret(webhook_key(front), "a") != owner_secret(webhook_key(front), "b")


def test_without_a_signing_key_the_key_file_is_made_once_and_reused(tmp_path):
    settings = Settings(keys_dir=tmp_path / "keys")
    first = webhook_key(settings)
    assert webhook_key(Settings(keys_dir=tmp_path / "keys")) == first
    assert oct(os.stat(tmp_path / "keys" / "webhook.key").st_mode & 0o777) == "0o600"
