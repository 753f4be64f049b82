#!/usr/bin/env bash
# `make image`: the service image, built with buildah (no Docker daemon needed). Its base,
# debian:bookworm-slim, is pulled from a registry when one answers, and otherwise bootstrapped
# from Debian's packages with mmdebstrap under the same name, so the Dockerfile is the same here
# and in any ordinary CI. Prints the build time and the image size.
#
#   bash deploy/docker/build_image.sh [IMAGE]     (as root: chroot isolation, buildah's default storage)
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGE=${1:-localhost/deepfake-service:0.1.0}
BASE=docker.io/library/debian:bookworm-slim
SUITE=bookworm
export BUILDAH_ISOLATION=chroot

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need buildah buildah
need mmdebstrap mmdebstrap

# BASE_DIGEST=sha256:... pins the registry's base (pulled by digest, never by a moving tag).
if [ -n "${BASE_DIGEST:-}" ]; then
    timeout 120 buildah pull --quiet "$BASE@$BASE_DIGEST" >/dev/null
    buildah tag "$BASE@$BASE_DIGEST" "$BASE"
fi
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    if ! timeout 60 buildah pull --quiet "$BASE" >/dev/null 2>&1; then
        echo "no registry answered: bootstrapping $BASE from Debian's packages (mmdebstrap $SUITE)"
        rootfs=$(mktemp --suffix=.tar)
        trap 'rm -f "$rootfs"' EXIT
        # apt's caches out of the base layer itself: a later layer's clean-up would not shrink it
        mmdebstrap --variant=minbase --quiet \
            --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' "$SUITE" "$rootfs"
        container=$(buildah from scratch)
        buildah add --quiet "$container" "$rootfs" / >/dev/null
        buildah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$container"
        buildah commit --quiet "$container" "$BASE" >/dev/null
        buildah rm "$container" >/dev/null
    fi
fi

# pip inside the build trusts what the host trusts: behind a TLS-inspecting proxy (this sandbox)
# that is more than Debian's bundle; elsewhere it is the same bundle.
proxy_ca=()
host_ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
if [ -f "$host_ca" ]; then
    proxy_ca=(--volume "$host_ca:/etc/ssl/certs/build-host-ca.crt:ro" --build-arg PIP_CERT=/etc/ssl/certs/build-host-ca.crt)
fi

# The base by its own digest (the registry's, or the bootstrapped image's): recorded in a label and
# printed, so two builds can be told to have started from the same bytes.
base_digest=$(buildah inspect --type image --format '{{.FromImageDigest}}' "$BASE")
echo "base $BASE@$base_digest"

version=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
started=$(date +%s)
# shellcheck disable=SC2086  # BUILD_FLAGS: extra buildah flags, e.g. --no-cache (reproducible.sh)
buildah bud --quiet --isolation chroot --network host --layers ${BUILD_FLAGS:-} "${proxy_ca[@]}" \
    --build-arg VERSION="$version" --build-arg SOURCE="$(git config --get remote.origin.url || echo local)" \
    --build-arg BASE_DIGEST="$base_digest" \
    -f deploy/docker/service.Dockerfile -t "$IMAGE" .
seconds=$(( $(date +%s) - started ))
size=$(buildah images --format '{{.Size}}' "$IMAGE" | head -1)
echo "built $IMAGE in ${seconds} s; image size ${size}"
