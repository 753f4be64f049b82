#!/usr/bin/env bash
# Regenerates deploy/docker/requirements-serve.lock: every package the service image installs, each
# pinned with the SHA-256 of every file PyPI has for it (pip --require-hashes refuses anything else).
# Run after changing [serve] in pyproject.toml; commit the lock; check it with pip-audit (docs/deployment.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
UV=${UV:-uv}
"$UV" pip compile pyproject.toml deploy/docker/requirements-image.in \
    --extra serve \
    --override deploy/docker/lock-overrides.txt \
    --generate-hashes \
    --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 \
    --no-header --quiet \
    --output-file deploy/docker/requirements-serve.lock
echo "wrote deploy/docker/requirements-serve.lock ($(grep -c '==' deploy/docker/requirements-serve.lock) packages)"
