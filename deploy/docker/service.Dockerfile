# The front service: FastAPI + PyAV + MediaPipe + ONNX Runtime / tritonclient. No torch.
# Builds unchanged with docker/podman against a registry, or here with `make image` (buildah, a
# debian:bookworm-slim base bootstrapped from Debian's packages when no registry is reachable).
#   buildah bud -f deploy/docker/service.Dockerfile -t deepfake-service:0.1.0 .
# The base, named once (build_image.sh pulls it by digest with BASE_DIGEST, or bootstraps it under
# this name from Debian's packages; the digest it used is recorded in the image's labels).
FROM docker.io/library/debian:bookworm-slim AS base

FROM base AS build
# A build host behind a TLS-inspecting proxy mounts its CA bundle and points pip at it
# (build_image.sh does); elsewhere Debian's bundle is right.
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
# Debian's own Python (3.11 in bookworm, the version the project is tested with).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the lock alone (every file's SHA-256 checked, nothing resolved at build
# time): a change to the code reuses this layer. deploy/docker/lock.sh writes the lock.
COPY deploy/docker/requirements-serve.lock ./
RUN pip install --no-cache-dir --no-deps --require-hashes -r requirements-serve.lock
# The face model, taken out of the mediapipe 0.10.21 wheel and checked against its SHA-256.
COPY preprocess_service/face_model.py ./
RUN python face_model.py /opt/models/face_detection_short_range.tflite
# The project itself, with the build backend the lock installed: no download, no resolution.
COPY pyproject.toml README.md ./
COPY model_contract/ model_contract/
COPY preprocess_service/ preprocess_service/
RUN pip install --no-cache-dir --no-deps --no-build-isolation .

FROM base
ARG BASE=docker.io/library/debian:bookworm-slim
ARG VERSION=0.1.0
ARG SOURCE=https://example.invalid/deepfake-detector
ARG BASE_DIGEST=unknown
LABEL org.opencontainers.image.title="deepfake-service" \
      org.opencontainers.image.base.name="${BASE}" \
      org.opencontainers.image.base.digest="${BASE_DIGEST}" \
      org.opencontainers.image.description="Deepfake video detection: upload, verdict, evidence, receipts" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.deepfake.model-contract="deepfake_backbone: faces UINT8 [n,S,S,3] -> features FP32 [n,2048]; deepfake_temporal: features FP32 [b,t,2048] -> probabilities FP32 [b,2] (FAKE, REAL)"
# mediapipe 1.2 loads libEGL and libGLESv2 at start, even on a CPU. OpenCV is the headless build
# (the lock's), so no libGL and with it no Mesa drivers or LLVM (about 160 MB).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libegl1 libgles2 libglib2.0-0 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
 && useradd --system --uid 10001 --home-dir /tmp --shell /usr/sbin/nologin deepfake \
 && install -d -o 10001 -m 0700 /var/lib/deepfake/keys
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/models /opt/models
# Mount points: the model repository (read-only) and nothing else is written outside /tmp.
RUN install -d -m 0755 /models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    OMP_WAIT_POLICY=PASSIVE \
    DEEPFAKE_FACE_MODEL_PATH=/opt/models/face_detection_short_range.tflite \
    DEEPFAKE_KEYS_DIR=/var/lib/deepfake/keys \
    DEEPFAKE_UPLOAD_DIR=/tmp/uploads \
    DEEPFAKE_DATABASE_URL=sqlite:////tmp/history.sqlite3 \
    DEEPFAKE_MODEL_REPOSITORY=/models \
    DEEPFAKE_LOG_FORMAT=json
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["deepfake-serve", "--host", "0.0.0.0", "--port", "8080"]
