"""What the answer is made of, called directly: the CSV-or-JSON choice, the CSV's file name (RFC
6266, and never a header injection), and the cache key (``model_key``): everything that changes an
answer must change the key, and a model that cannot be identified is never cached."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from model_contract.identity import ModelInfo
from model_contract.preprocessing import default_profile
from preprocess_service.history.recorder import model_key
from preprocess_service.presenter import csv_content_disposition, wants_csv
from preprocess_service.settings import Settings

CHECKPOINT = "ab" * 32


@pytest.mark.parametrize(
    "format,accept,expected",
    [
        ("csv", "application/json", True),  # the query wins over Accept
        ("json", "text/csv", False),
        (None, "text/csv", True),
        (None, "text/html, text/csv;q=0.9", True),
        (None, "application/json", False),
        (None, "*/*", False),  # a browser or curl without a preference gets JSON
        (None, "", False),
    ],
)
def test_csv_only_when_asked_for(format, accept, expected):
    assert wants_csv(format, accept) is expected


@pytest.mark.parametrize(
    "filename,ascii_name,encoded",
    [
        ("face.mp4", "face_frames.csv", "face_frames.csv"),
        ("no extension", "no extension_frames.csv", "no%20extension_frames.csv"),
        ("a.b.mov", "a.b_frames.csv", "a.b_frames.csv"),
        (".mp4", "frames_frames.csv", "frames_frames.csv"),
        ("Été à Zürich.mp4", "_t_ _ Z_rich_frames.csv", "%C3%89t%C3%A9%20%C3%A0%20Z%C3%BCrich_frames.csv"),
        ('quote"back\\slash.mp4', "quote_back_slash_frames.csv", "quote%22back%5Cslash_frames.csv"),
        (
            "line\r\nSet-Cookie: x=1.mp4",
            "line__Set-Cookie: x=1_frames.csv",
            "line%0D%0ASet-Cookie%3A%20x%3D1_frames.csv",
        ),
    ],
)
def test_the_csv_is_named_after_the_upload_in_both_rfc_6266_forms(filename, ascii_name, encoded):
    header = csv_content_disposition(filename)
    assert header == f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"
    assert header.isascii() and "\r" not in header and "\n" not in header


def model(**changes: object) -> ModelInfo:
    base = ModelInfo(
        family="attention",
        input_size=180,
        untrained_demo=False,
        checkpoint_sha256=CHECKPOINT,
        backend="embedded",
        preprocessing=default_profile("attention"),
        architecture={"heads": "4"},
        max_time=60,
    )
    return dataclasses.replace(base, **changes)


def settings(**changes: object) -> Settings:
    return Settings(keys_dir=Path("/nonexistent"), **changes)


def test_the_same_model_and_settings_give_the_same_key():
    assert model_key(model(), settings()) == model_key(model(), settings())
    assert len(model_key(model(), settings()) or "") == 64


@pytest.mark.parametrize(
    "changed_model",
    [
        {"checkpoint_sha256": "cd" * 32},
        {"precision": "int8"},
        {"runtime": "openvino"},
        {"architecture": {"heads": "8"}},
        {"max_time": 100},
        {"thresholds": {"sequence": 0.7, "original": 0.5}},
        {"preprocessing": default_profile("legacy")},
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(changed_model):
    assert model_key(model(**changed_model), settings()) != model_key(model(), settings())


@pytest.mark.parametrize(
    "changed_setting",
    [{"num_frames": 20}, {"verdict": "original"}, {"face_min_confidence": 0.7}, {"display_frames": 2}],
)
def test_settings_that_change_the_answer_change_the_key(changed_setting):
    assert model_key(model(), settings(**changed_setting)) != model_key(model(), settings())


def test_a_model_that_cannot_be_identified_is_never_cached():
    assert model_key(model(checkpoint_sha256="unknown"), settings()) is None
    assert model_key(model(checkpoint_sha256=""), settings()) is None
    assert model_key(model(checkpoint_sha256="none (untrained demo, seed 0)"), settings()) is not None
