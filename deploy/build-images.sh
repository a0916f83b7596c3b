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
# 4. the same for Node.js: a second root filesystem with Debian's nodejs (Node 18) and no
#    python3, imported as hotpool/base-debian-nodejs:bookworm, and
#    deploy/runtimes/nodejs/Dockerfile from a context holding manager/runtime/nodejs
# The runtime images are rebuilt whenever their bootstrap or Dockerfile changes (its content
# hash is a label), so a stale image is never used.
#
#   HOTPOOL_BUILD_RUNTIMES="python"   # only these runtimes' images (default: python nodejs provided)
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh

BASE_IMAGE="${HOTPOOL_BASE_IMAGE:-hotpool/base-debian:bookworm}"
RUNTIME_IMAGE="${HOTPOOL_RUNTIME_IMAGE:-hotpool/runtime-python:latest}"
ROOTFS_DIR="${ROOTFS_DIR:-/var/cache/hotpool/rootfs-bookworm}"
NODEJS_BASE_IMAGE="${HOTPOOL_BASE_IMAGE_NODEJS:-hotpool/base-debian-nodejs:bookworm}"
NODEJS_IMAGE="${HOTPOOL_RUNTIME_IMAGE_NODEJS:-hotpool/runtime-nodejs:latest}"
NODEJS_ROOTFS_DIR="${NODEJS_ROOTFS_DIR:-/var/cache/hotpool/rootfs-bookworm-nodejs}"
BUILD_RUNTIMES="${HOTPOOL_BUILD_RUNTIMES:-python nodejs provided}"
# what the runtime provides to every function (a lower bound: the newest at build time)
PROVIDED_REQUIREMENTS="${HOTPOOL_PROVIDED_REQUIREMENTS:-boto3>=1.34}"

command -v docker >/dev/null || { echo "docker is not installed (apt-get install docker.io)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "the Docker daemon is not running (start dockerd)" >&2; exit 1; }

wanted() { [[ " $BUILD_RUNTIMES " == *" $1 "* ]]; }

if wanted python; then
base_image "$BASE_IMAGE" "$ROOTFS_DIR" python3 python3
# the Dockerfile, then every source of the runtime folder by name and content, in a fixed order
runtime_dir=manager/runtime/python
context_hash="$(source_hash deploy/runtimes/python/Dockerfile "$runtime_dir" '*.py' "$PROVIDED_REQUIREMENTS")"
current="$(image_source "$RUNTIME_IMAGE")"
if [[ -n "${FORCE:-}" || "$current" != "$context_hash" ]]; then
    context="$(mktemp -d)"
    trap 'rm -rf "${context:-}" "${node_context:-}"' EXIT
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
fi

if wanted nodejs; then
    base_image "$NODEJS_BASE_IMAGE" "$NODEJS_ROOTFS_DIR" nodejs node
    node_dir=manager/runtime/nodejs
    node_hash="$(source_hash deploy/runtimes/nodejs/Dockerfile "$node_dir" '*.js*')"
    if [[ -n "${FORCE:-}" || "$(image_source "$NODEJS_IMAGE")" != "$node_hash" ]]; then
        node_context="$(mktemp -d)"
        trap 'rm -rf "${context:-}" "${node_context:-}"' EXIT
        mkdir "$node_context/bootstrap"
        (cd "$node_dir" && find . -name '*.js*' -print0 | xargs -0 cp --parents -t "$node_context/bootstrap")
        DOCKER_BUILDKIT=0 docker build --quiet \
            --build-arg BASE_IMAGE="$NODEJS_BASE_IMAGE" \
            --label org.hotpool.source="$node_hash" \
            -t "$NODEJS_IMAGE" -f deploy/runtimes/nodejs/Dockerfile "$node_context" >/dev/null
        echo "built $NODEJS_IMAGE" >&2
    else
        echo "$NODEJS_IMAGE is up to date" >&2
    fi
fi

# 5. the custom-runtime image (runtime=provided): its own base and build, HOTPOOL_RUNTIME_IMAGE_PROVIDED
if wanted provided; then
    bash deploy/runtimes/provided/build.sh
fi
