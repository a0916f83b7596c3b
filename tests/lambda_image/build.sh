#!/usr/bin/env bash
# Build the Lambda-style test image of the container-image functions' tests, twice: as
# $HOTPOOL_TEST_LAMBDA_IMAGE (variant v1) and as that tag with "-v2" appended (variant v2),
# two images that differ only in what their handler answers (the digest-pinning test re-tags
# the one to the other). No registry: the base is deploy/build-images.sh's Debian image, the
# runtime interface client and the emulator come from PyPI.
#
#   tests/lambda_image/build.sh          # idempotent: skips a build whose inputs are unchanged
#   FORCE=1 tests/lambda_image/build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BASE_IMAGE="${HOTPOOL_BASE_IMAGE:-hotpool/base-debian:bookworm}"
IMAGE="${HOTPOOL_TEST_LAMBDA_IMAGE:-hotpool-test/lambda-python:latest}"
RIC="${HOTPOOL_TEST_RIC_REQUIREMENT:-awslambdaric>=2.2}"
SAM="${HOTPOOL_TEST_SAM_REQUIREMENT:-aws-sam-cli>=1.100}"

docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
    || { echo "no $BASE_IMAGE: run deploy/build-images.sh first" >&2; exit 1; }
source_hash="$(cat "$here"/Dockerfile "$here"/app.py "$here"/lambda-entrypoint.sh \
    <(echo "$RIC $SAM $BASE_IMAGE") | sha256sum | cut -c1-16)"
current="$(docker image inspect -f '{{ index .Config.Labels "org.hotpool.source" }}' "$IMAGE-v2" 2>/dev/null || true)"
if [[ -z "${FORCE:-}" && "$current" == "$source_hash" ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE is up to date" >&2
    exit 0
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$here"/Dockerfile "$here"/app.py "$here"/lambda-entrypoint.sh "$context"/
image_python="$(docker run --rm --entrypoint python3 "$BASE_IMAGE" \
    -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$(uname -m)" in
    x86_64) arch=x86_64 ;;
    aarch64) arch=arm64 ;;
    *) echo "no aws-lambda-rie for $(uname -m)" >&2; exit 1 ;;
esac
# the client has a C extension: the manylinux wheel for the image's Python
python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --no-compile \
    --target "$context/ric" --only-binary=:all: --python-version "$image_python" \
    --platform "manylinux2014_$(uname -m)" --platform "manylinux_2_17_$(uname -m)" \
    --platform "manylinux_2_28_$(uname -m)" --implementation cp "$RIC" >&2
rm -rf "$context/ric/bin"
# the emulator: a static Go binary that the SAM CLI wheel carries for `sam local invoke`
python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$context/sam" "$SAM" >&2
python3 - "$context" "$arch" <<'PY'
import glob, sys, zipfile
context, arch = sys.argv[1:]
(wheel,) = glob.glob(f"{context}/sam/aws_sam_cli-*.whl")
with zipfile.ZipFile(wheel) as zf, open(f"{context}/aws-lambda-rie", "wb") as out:
    out.write(zf.read(f"samcli/local/rapid/aws-lambda-rie-{arch}"))
PY
chmod 0755 "$context/aws-lambda-rie" "$context/lambda-entrypoint.sh"
for variant in v1 v2; do
    tag="$IMAGE"
    [[ "$variant" == v1 ]] || tag="$IMAGE-$variant"
    DOCKER_BUILDKIT=0 docker build --quiet --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg VARIANT="$variant" --label org.hotpool.source="$source_hash" \
        -t "$tag" "$context" >/dev/null
    echo "built $tag" >&2
done
