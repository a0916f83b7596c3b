#!/usr/bin/env bash
# Build the custom-runtime image (runtime=provided) without any image registry; build-images.sh
# runs it. Idempotent: rebuilt only when the relay's sources or the Dockerfile change (a
# content hash label), the base only when missing (or FORCE=1).
#
# 1. debootstrap a minimal bookworm with python3, curl, libstdc++6, ca-certificates (once, kept
#    in ROOTFS_DIR), imported as hotpool/base-debian-provided:bookworm
# 2. docker build deploy/runtimes/provided/Dockerfile from a context holding the relay
#    (the Python runtime folder, manager/runtime/python)
#
#   HOTPOOL_RUNTIME_IMAGE_PROVIDED=hotpool/runtime-provided:mine deploy/runtimes/provided/build.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
source deploy/lib.sh

BASE="${HOTPOOL_BASE_IMAGE_PROVIDED:-hotpool/base-debian-provided:bookworm}"
IMAGE="${HOTPOOL_RUNTIME_IMAGE_PROVIDED:-hotpool/runtime-provided:latest}"
ROOTFS="${PROVIDED_ROOTFS_DIR:-/var/cache/hotpool/rootfs-bookworm-provided}"
PACKAGES="python3,curl,libstdc++6,ca-certificates"

base_image "$BASE" "$ROOTFS" "$PACKAGES" curl

runtime_dir=manager/runtime/python
provided_hash="$(source_hash deploy/runtimes/provided/Dockerfile "$runtime_dir" '*.py')"
current="$(image_source "$IMAGE")"
if [[ -z "${FORCE:-}" && "$current" == "$provided_hash" ]]; then
    echo "$IMAGE is up to date" >&2
    exit 0
fi
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir "$context/bootstrap"
(cd "$runtime_dir" && find . -name '*.py' -not -path '*/__pycache__/*' -print0 \
    | xargs -0 cp --parents -t "$context/bootstrap")
DOCKER_BUILDKIT=0 docker build --quiet --build-arg BASE_IMAGE="$BASE" \
    --label org.hotpool.source="$provided_hash" \
    -t "$IMAGE" -f deploy/runtimes/provided/Dockerfile "$context" >/dev/null
echo "built $IMAGE" >&2
