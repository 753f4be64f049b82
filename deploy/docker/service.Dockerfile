# The front service: FastAPI + PyAV + MediaPipe + ONNX Runtime / tritonclient. No torch.
# Build from the repository root:  docker build -f deploy/docker/service.Dockerfile -t deepfake-service:0.1.0 .

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY export/ export/
COPY preprocess_service/ preprocess_service/
# Versions come from pyproject.toml's [serve] extra (mediapipe pinned there).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[serve]" \
 && python -m preprocess_service.face_model /opt/models/face_detection_short_range.tflite

FROM python:3.11-slim-bookworm
# opencv-contrib-python (required by mediapipe) links libGL and glib even when headless.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /tmp --shell /usr/sbin/nologin deepfake \
 && install -d -o 10001 -m 0700 /var/lib/deepfake/keys
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/models /opt/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    OMP_WAIT_POLICY=PASSIVE \
    DEEPFAKE_FACE_MODEL_PATH=/opt/models/face_detection_short_range.tflite \
    DEEPFAKE_KEYS_DIR=/var/lib/deepfake/keys \
    DEEPFAKE_UPLOAD_DIR=/tmp/uploads
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["deepfake-serve", "--host", "0.0.0.0", "--port", "8080"]
