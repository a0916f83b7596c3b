#!/usr/bin/env bash
# Build hotpool's runtime image(s) on a machine that cannot reach any image registry.
#
#   deploy/build-images.sh            # idempotent: does nothing when the image exists
#   FORCE=1 deploy/build-images.sh    # rebuild
#   DEBIAN_MIRROR=http://... deploy/build-images.sh   # a mirror other than apt's own
#
# 1. debootstrap a minimal Debian bookworm root filesystem with python3 (about 45 s, once),
#    from the Debian mirror (and through the proxy) this machine's apt uses
# 2. docker import it as the base image  hotpool/base-debian:bookworm
# 3. docker build deploy/runtimes/python/Dockerfile with BASE_IMAGE=that base, from a context
#    holding the bootstrap folder and provided/: boto3 and its dependencies, installed here
#    with pip from PyPI for the image's Python (pure-Python wheels), which the runtime offers
#    every function behind its own packages, as Lambda's Python runtime does
# The runtime image is rebuilt whenever the bootstrap or the Dockerfile changes (its content
# hash is a label), so a stale image is never used.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/apt-sources.sh

BASE_IMAGE="${HOTPOOL_BASE_IMAGE:-hotpool/base-debian:bookworm}"
RUNTIME_IMAGE="${HOTPOOL_RUNTIME_IMAGE:-hotpool/runtime-python:latest}"
ROOTFS_DIR="${ROOTFS_DIR:-/var/cache/hotpool/rootfs-bookworm}"
# what the runtime provides to every function (a lower bound: the newest at build time)
PROVIDED_REQUIREMENTS="${HOTPOOL_PROVIDED_REQUIREMENTS:-boto3>=1.34}"

command -v docker >/dev/null || { echo "docker is not installed (apt-get install docker.io)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "the Docker daemon is not running (start dockerd)" >&2; exit 1; }

if [[ -n "${FORCE:-}" ]] || ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || apt-get install -y debootstrap
    if [[ ! -x "$ROOTFS_DIR/usr/bin/python3" ]]; then
        rm -rf "$ROOTFS_DIR.partial"
        mkdir -p "$(dirname "$ROOTFS_DIR")"
        mirror="$(debian_mirror)"
        if [[ -z "${http_proxy:-}" ]]; then
            http_proxy="$(apt_http_proxy)"
            [[ -z "$http_proxy" ]] || export http_proxy
        fi
        echo "debootstrap: building a minimal Debian root filesystem in $ROOTFS_DIR from $mirror" >&2
        debootstrap --variant=minbase --include=python3 bookworm "$ROOTFS_DIR.partial" "$mirror" >&2
        # caches and docs are dead weight in every container
        rm -rf "$ROOTFS_DIR.partial"/var/cache/apt/archives/*.deb \
               "$ROOTFS_DIR.partial"/var/lib/apt/lists/* \
               "$ROOTFS_DIR.partial"/usr/share/doc/* "$ROOTFS_DIR.partial"/usr/share/man/*
        mv "$ROOTFS_DIR.partial" "$ROOTFS_DIR"
    fi
    tar -C "$ROOTFS_DIR" -c . | docker import - "$BASE_IMAGE" >/dev/null
    echo "imported $BASE_IMAGE" >&2
fi

# the Dockerfile, then every source of the runtime folder by name and content, in a fixed order
runtime_dir=manager/runtime/python
context_hash="$( {
    cat deploy/runtimes/python/Dockerfile
    echo "$PROVIDED_REQUIREMENTS"
    find "$runtime_dir" -type f -name '*.py' -not -path '*/__pycache__/*' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-16)"
current="$(docker image inspect -f '{{ index .Config.Labels "org.hotpool.source" }}' "$RUNTIME_IMAGE" 2>/dev/null || true)"
if [[ -n "${FORCE:-}" || "$current" != "$context_hash" ]]; then
    context="$(mktemp -d)"
    trap 'rm -rf "$context"' EXIT
    mkdir "$context/bootstrap"
    (cd "$runtime_dir" && find . -name '*.py' -not -path '*/__pycache__/*' -print0 \
        | xargs -0 cp --parents -t "$context/bootstrap")
    # wheels for the image's interpreter, not this machine's: markers (urllib3's) differ
    image_python="$(docker run --rm --entrypoint python3 "$BASE_IMAGE" \
        -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --no-compile \
        --target "$context/provided" --only-binary=:all: --python-version "$image_python" \
        $PROVIDED_REQUIREMENTS >&2
    rm -rf "$context/provided/bin"
    DOCKER_BUILDKIT=0 docker build --quiet \
        --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --label org.hotpool.source="$context_hash" \
        -t "$RUNTIME_IMAGE" -f deploy/runtimes/python/Dockerfile "$context" >/dev/null
    echo "built $RUNTIME_IMAGE" >&2
else
    echo "$RUNTIME_IMAGE is up to date" >&2
fi

# the custom-runtime image (runtime=provided): its own base and build, HOTPOOL_RUNTIME_IMAGE_PROVIDED
bash deploy/runtimes/provided/build.sh
