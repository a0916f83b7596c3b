# What the image build scripts share (source this file): deploy/build-images.sh and
# deploy/runtimes/provided/build.sh.
#
#   base_image IMAGE ROOTFS PACKAGES BINARY   import a debootstrap'ed minimal bookworm holding
#                                             PACKAGES (comma-separated, with what they depend
#                                             on) as IMAGE, unless it exists (or FORCE); the
#                                             root filesystem is built once and kept in ROOTFS,
#                                             complete once ROOTFS/usr/bin/BINARY exists
#   source_hash DOCKERFILE DIR PATTERN [EXTRA]  a runtime image's content hash: the Dockerfile,
#                                             EXTRA, then every source of DIR matching PATTERN
#                                             by name and content, in a fixed order
#   image_source IMAGE                        the content hash IMAGE was built from ("" if none)

source "$(dirname "${BASH_SOURCE[0]}")/apt-sources.sh"

base_image() {
    local image="$1" rootfs="$2" packages="$3" binary="$4"
    if [[ -z "${FORCE:-}" ]] && docker image inspect "$image" >/dev/null 2>&1; then
        return
    fi
    command -v debootstrap >/dev/null || apt-get install -y debootstrap
    if [[ ! -x "$rootfs/usr/bin/$binary" ]]; then
        rm -rf "$rootfs.partial"
        mkdir -p "$(dirname "$rootfs")"
        local mirror
        mirror="$(debian_mirror)"
        if [[ -z "${http_proxy:-}" ]]; then
            http_proxy="$(apt_http_proxy)"
            [[ -z "$http_proxy" ]] || export http_proxy
        fi
        echo "debootstrap: a minimal Debian with $packages in $rootfs from $mirror" >&2
        debootstrap --variant=minbase --include="$packages" bookworm "$rootfs.partial" "$mirror" >&2
        # caches and docs are dead weight in every container
        rm -rf "$rootfs.partial"/var/cache/apt/archives/*.deb \
               "$rootfs.partial"/var/lib/apt/lists/* \
               "$rootfs.partial"/usr/share/doc/* "$rootfs.partial"/usr/share/man/*
        mv "$rootfs.partial" "$rootfs"
    fi
    tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
    echo "imported $image" >&2
}

source_hash() {
    {
        cat "$1"
        echo "${4:-}"
        find "$2" -type f -name "$3" -not -path '*/__pycache__/*' -print0 \
            | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
}

image_source() {
    docker image inspect -f '{{ index .Config.Labels "org.hotpool.source" }}' "$1" 2>/dev/null || true
}
