"""deploy/lib.sh's base_image, the debootstrap step both image builds share
(deploy/build-images.sh and deploy/runtimes/provided/build.sh), run by bash against stand-in
``docker`` and ``debootstrap`` commands that record what they were asked to do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

LIB = Path(__file__).resolve().parents[2] / "deploy" / "lib.sh"

# inspect answers from a marker file; import stores the tar it is fed
FAKE_DOCKER = """#!/bin/bash
echo "docker $*" >> "$CALLS"
case "$1 $2" in
    "image inspect") [[ -e "$IMAGES/${3//[:\\/]/_}" ]] ;;
    "import -") cat > "$IMAGES/import.tar" && touch "$IMAGES/${3//[:\\/]/_}" ;;
esac
"""
# debootstrap --variant=minbase --include=PACKAGES SUITE DIR MIRROR: a tiny root filesystem
FAKE_DEBOOTSTRAP = """#!/bin/bash
echo "debootstrap $*" >> "$CALLS"
mkdir -p "$4/usr/bin" "$4/usr/share/doc/pkg" "$4/var/cache/apt/archives"
touch "$4/usr/bin/curl" "$4/usr/share/doc/pkg/README" "$4/var/cache/apt/archives/x.deb"
chmod +x "$4/usr/bin/curl"
"""


def base_image(tmp_path: Path, *, image_exists: bool = False, **env: str) -> list[str]:
    bin_dir, images = tmp_path / "bin", tmp_path / "images"
    bin_dir.mkdir(exist_ok=True)
    images.mkdir(exist_ok=True)
    for name, text in (("docker", FAKE_DOCKER), ("debootstrap", FAKE_DEBOOTSTRAP)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    if image_exists:
        (images / "base_x").touch()
    calls = tmp_path / "calls"
    calls.write_text("")
    environ = os.environ | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "IMAGES": str(images),
        "DEBIAN_MIRROR": "http://mirror.lan/debian",
        "http_proxy": "http://proxy.lan:3128",
        **env,
    }
    script = f'source "{LIB}" && base_image base:x "$1" python3,curl curl'
    subprocess.run(
        ["bash", "-c", script, "lib", str(tmp_path / "rootfs")],
        env=environ,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return calls.read_text().splitlines()


def test_a_missing_base_is_debootstrapped_once_stripped_and_imported(tmp_path):
    calls = base_image(tmp_path)
    rootfs = tmp_path / "rootfs"
    assert calls == [
        "docker image inspect base:x",
        "debootstrap --variant=minbase --include=python3,curl bookworm "
        f"{rootfs}.partial http://mirror.lan/debian",
        "docker import - base:x",
    ]
    assert (rootfs / "usr/bin/curl").exists() and not (tmp_path / "rootfs.partial").exists()
    assert not any((rootfs / "usr/share/doc").iterdir())
    assert not any((rootfs / "var/cache/apt/archives").iterdir())
    imported = subprocess.run(
        ["tar", "-tf", str(tmp_path / "images" / "import.tar")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "./usr/bin/curl" in imported

    # the image removed, the kept root filesystem is imported again without a debootstrap
    (tmp_path / "images" / "base_x").unlink()
    assert base_image(tmp_path) == ["docker image inspect base:x", "docker import - base:x"]


def test_an_existing_base_is_left_alone_unless_forced(tmp_path):
    assert base_image(tmp_path, image_exists=True) == ["docker image inspect base:x"]
    forced = base_image(tmp_path, image_exists=True, FORCE="1")
    assert forced[0].startswith("debootstrap ") and forced[-1] == "docker import - base:x"
