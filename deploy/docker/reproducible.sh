#!/usr/bin/env bash
# Is the service image reproducible? Builds it twice with no layer cache (the same base, by digest),
# then compares the installed Python packages (pip freeze inside each image) and prints both sizes.
# Exit 0 when the package sets are identical. Writes benchmarks/results/image_reproducible.json.
#
#   bash deploy/docker/reproducible.sh      (as root, like build_image.sh; about 4 minutes here)
set -euo pipefail
cd "$(dirname "$0")/../.."
export BUILDAH_ISOLATION=chroot
freeze() {
    local container
    container=$(buildah from "$1")
    buildah run --isolation chroot "$container" -- pip freeze --all
    buildah rm "$container" >/dev/null
}
for n in 1 2; do
    BUILD_FLAGS=--no-cache bash deploy/docker/build_image.sh "localhost/deepfake-service:repro$n"
    freeze "localhost/deepfake-service:repro$n" >"/tmp/deepfake-freeze-$n.txt"
done
size1=$(buildah images --format '{{.Size}}' localhost/deepfake-service:repro1 | head -1)
size2=$(buildah images --format '{{.Size}}' localhost/deepfake-service:repro2 | head -1)
identical=false
if diff -u /tmp/deepfake-freeze-1.txt /tmp/deepfake-freeze-2.txt; then identical=true; fi
packages=$(grep -c '==' /tmp/deepfake-freeze-1.txt)
mkdir -p benchmarks/results
python3 - "$identical" "$packages" "$size1" "$size2" <<'PY'
import json, sys, datetime
identical, packages, size1, size2 = sys.argv[1:]
result = {
    "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "builds": 2, "layer_cache": False, "pip_freeze_identical": identical == "true",
    "packages": int(packages), "sizes": [size1, size2],
}
json.dump(result, open("benchmarks/results/image_reproducible.json", "w"), indent=1)
print(json.dumps(result))
PY
[ "$identical" = true ]
