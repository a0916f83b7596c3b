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
source deploy/apt-sources.sh

BASE="${HOTPOOL_BASE_IMAGE_PROVIDED:-hotpool/base-debian-provided:bookworm}"
IMAGE="${HOTPOOL_RUNTIME_IMAGE_PROVIDED:-hotpool/runtime-provided:latest}"
ROOTFS="${PROVIDED_ROOTFS_DIR:-/var/cache/hotpool/rootfs-bookworm-provided}"
PACKAGES="python3,curl,libstdc++6,ca-certificates"

if [[ -n "${FORCE:-}" ]] || ! docker image inspect "$BASE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || apt-get install -y debootstrap
    if [[ ! -x "$ROOTFS/usr/bin/curl" ]]; then
        rm -rf "$ROOTFS.partial"
        mkdir -p "$(dirname "$ROOTFS")"
        mirror="$(debian_mirror)"
        if [[ -z "${http_proxy:-}" ]]; then
            http_proxy="$(apt_http_proxy)"
            [[ -z "$http_proxy" ]] || export http_proxy
        fi
        echo "debootstrap: a minimal Debian with $PACKAGES in $ROOTFS from $mirror" >&2
        debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOTFS.partial" "$mirror" >&2
        rm -rf "$ROOTFS.partial"/var/cache/apt/archives/*.deb "$ROOTFS.partial"/var/lib/apt/lists/* \
               "$ROOTFS.partial"/usr/share/doc/* "$ROOTFS.partial"/usr/share/man/*
        mv "$ROOTFS.partial" "$ROOTFS"
    fi
    tar -C "$ROOTFS" -c . | docker import - "$BASE" >/dev/null
    echo "imported $BASE" >&2
fi

runtime_dir=manager/runtime/python
source_hash="$( {
    cat deploy/runtimes/provided/Dockerfile
    find "$runtime_dir" -type f -name '*.py' -not -path '*/__pycache__/*' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-16)"
current="$(docker image inspect -f '{{ index .Config.Labels "org.hotpool.source" }}' "$IMAGE" 2>/dev/null || true)"
if [[ -z "${FORCE:-}" && "$current" == "$source_hash" ]]; then
    echo "$IMAGE is up to date" >&2
    exit 0
fi
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir "$context/bootstrap"
(cd "$runtime_dir" && find . -name '*.py' -not -path '*/__pycache__/*' -print0 \
    | xargs -0 cp --parents -t "$context/bootstrap")
DOCKER_BUILDKIT=0 docker build --quiet --build-arg BASE_IMAGE="$BASE" \
    --label org.hotpool.source="$source_hash" \
    -t "$IMAGE" -f deploy/runtimes/provided/Dockerfile "$context" >/dev/null
echo "built $IMAGE" >&2
