"""deploy/build-images.sh takes its Debian mirror from the machine's own apt sources.

A machine behind a local mirror (or an apt proxy) reaches nothing else; a hard-coded mirror
address made the build fail there. ``debian_mirror`` (deploy/apt-sources.sh) is run by bash on
fake apt directories: the first enabled binary source of a Debian suite wins, in apt's order;
DEBIAN_MIRROR overrides it; with no Debian source the default remains.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

HELPERS = Path(__file__).resolve().parents[2] / "deploy" / "apt-sources.sh"
DEFAULT = "http://deb.debian.org/debian"

DEBIAN_DEB822 = """\
Types: deb
# a comment inside the stanza
URIs: http://mirror.lan/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.lan/debian-security
Suites: bookworm-security
Components: main
"""
SECURITY_FIRST = """\
Types: deb
URIs: http://security.lan/debian-security
Suites: bookworm-security
Components: main

Types: deb-src deb
URIs: https://mirror.lan/debian
Suites: bookworm
Components: main
"""
DISABLED_FIRST = """\
Types: deb
URIs: http://old.lan/debian
Suites: bookworm
Enabled: no

Types: deb
URIs: http://mirror.lan/debian
Suites: bookworm
"""
ONE_LINE = """\
# deb http://commented.lan/debian bookworm main
deb-src http://src.lan/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://mirror.lan:3142/debian bookworm main
deb http://later.lan/debian bookworm main
"""
THIRD_PARTY = "deb https://deb.nodesource.com/node_20.x nodistro main\n"
UBUNTU = "deb http://archive.ubuntu.com/ubuntu jammy main universe\n"


def _mirror(apt_dir: Path, **env: str) -> str:
    script = f'source "{HELPERS}" && debian_mirror "$1"'
    environ = {k: v for k, v in os.environ.items() if k != "DEBIAN_MIRROR"} | env
    done = subprocess.run(
        ["bash", "-c", script, "mirror", str(apt_dir)],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
        timeout=10,
    )
    return done.stdout.strip()


def _apt_dir(root: Path, files: dict[str, str]) -> Path:
    (root / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"sources.list.d/debian.sources": DEBIAN_DEB822}, "http://mirror.lan/debian"),
        ({"sources.list.d/debian.sources": SECURITY_FIRST}, "https://mirror.lan/debian"),
        ({"sources.list.d/debian.sources": DISABLED_FIRST}, "http://mirror.lan/debian"),
        ({"sources.list": ONE_LINE}, "http://mirror.lan:3142/debian"),
        # apt's order: sources.list first, then sources.list.d/ by name; *.disabled is not read
        (
            {
                "sources.list.d/a-other.list": "deb http://b.lan/debian trixie main\n",
                "sources.list.d/0-first.list.disabled": "deb http://no.lan/debian sid main\n",
                "sources.list.d/z.sources": DEBIAN_DEB822,
                "sources.list": THIRD_PARTY,
            },
            "http://b.lan/debian",
        ),
        ({"sources.list": THIRD_PARTY + UBUNTU}, DEFAULT),
        ({}, DEFAULT),
    ],
    ids=["deb822", "security-first", "disabled", "one-line", "apt-order", "no-debian", "empty"],
)
def test_mirror_comes_from_the_apt_sources(tmp_path, files, expected):
    assert _mirror(_apt_dir(tmp_path, files)) == expected


def test_debian_mirror_variable_overrides_the_sources(tmp_path):
    apt_dir = _apt_dir(tmp_path, {"sources.list.d/debian.sources": DEBIAN_DEB822})
    assert _mirror(apt_dir, DEBIAN_MIRROR="http://chosen.lan/debian") == "http://chosen.lan/debian"


def test_apt_proxy_is_found(tmp_path):
    config = tmp_path / "apt.conf"
    config.write_text('Acquire::http::Proxy "http://127.0.0.1:3142";\n')
    script = f'source "{HELPERS}" && apt_http_proxy'
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env=os.environ | {"APT_CONFIG": str(config)},
        check=True,
        timeout=10,
    )
    assert done.stdout.strip() == "http://127.0.0.1:3142"


def test_build_scripts_no_longer_hard_code_a_mirror():
    deploy = HELPERS.parent
    for script in (deploy / "build-images.sh", deploy / "runtimes" / "provided" / "build.sh"):
        text = script.read_text()
        assert "deb.debian.org" not in text
        assert "source deploy/lib.sh" in text  # whose base_image debootstraps
    lib = (deploy / "lib.sh").read_text()
    assert "deb.debian.org" not in lib
    assert 'source "$(dirname "${BASH_SOURCE[0]}")/apt-sources.sh"' in lib
    assert 'mirror="$(debian_mirror)"' in lib
