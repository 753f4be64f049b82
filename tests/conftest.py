"""Shared fixtures: one demo export per test session, real seed videos, real faces."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED_VIDEOS = ROOT.parent / "shared" / "testdata" / "seed_videos"


@pytest.fixture(scope="session")
def demo_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Triton model repository exported from the untrained demo model, as `make serve` makes it."""
    from export.checkpoint import demo_model
    from export.repository import export_repository

    repository = tmp_path_factory.mktemp("model_repository")
    export_repository(demo_model(), repository)
    return repository


@pytest.fixture(scope="session")
def seed_videos() -> list[Path]:
    videos = sorted(p for p in SEED_VIDEOS.iterdir() if p.suffix.lower() in {".mp4", ".mov"})
    assert len(videos) == 5, f"expected the 5 seed videos in {SEED_VIDEOS}"
    return videos
