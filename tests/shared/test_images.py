"""Image references, the allow-list and the emulator's removal (shared.images): tables."""

from __future__ import annotations

import pytest

from hotpool.shared.errors import Forbidden, InvalidRequest
from hotpool.shared.images import (
    ImageRef,
    allow_prefixes,
    check_allowed,
    emulator_override,
    parse_reference,
    without_emulator,
)

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("fn", ImageRef("fn", "", "")),
        ("team/fn:1.2", ImageRef("team/fn", "1.2", "")),
        ("registry.local:5000/team/fn:v1", ImageRef("registry.local:5000/team/fn", "v1", "")),
        ("localhost/fn@" + DIGEST, ImageRef("localhost/fn", "", DIGEST)),
        ("host:5000/a/b", ImageRef("host:5000/a/b", "", "")),
        ("a__b/c-d.e:Tag_1", ImageRef("a__b/c-d.e", "Tag_1", "")),
    ],
)
def test_references_parse_as_docker_writes_them(ref, parsed):
    assert parse_reference(ref) == parsed


@pytest.mark.parametrize(
    "ref",
    ["", "UPPER/fn", "fn:", "fn:a:b", "fn@sha256:abc", "-fn", "fn/", "a//b", "x" * 256, "f n"],
)
def test_malformed_references_are_400(ref):
    with pytest.raises(InvalidRequest):
        parse_reference(ref)


def test_the_names_a_resolved_image_must_carry():
    assert parse_reference("team/fn").names == ("team/fn:latest",)
    assert parse_reference("team/fn:2").names == ("team/fn:2",)
    assert parse_reference(f"team/fn:2@{DIGEST}").names == (f"team/fn@{DIGEST}",)


@pytest.mark.parametrize(
    ("allow", "namespace", "ref", "allowed"),
    [
        ("", "a", "reg.local/a/fn", False),
        ("reg.local/", "a", "reg.local/a/fn", True),
        ("reg.local/{namespace}/", "a", "reg.local/a/fn", True),
        ("reg.local/{namespace}/", "b", "reg.local/a/fn", False),
        ("reg.local/{namespace}/", "a", "reg.local/ab/fn", False),
        ("x/, reg.local/", "a", "reg.local/fn", True),
        ("hotpool/", "a", "hotpool/runtime-python", False),
        ("debian", "a", "debian", True),
    ],
)
def test_the_allow_list(allow, namespace, ref, allowed):
    check = lambda: check_allowed(parse_reference(ref), namespace, allow_prefixes(allow))  # noqa: E731
    if allowed:
        check()
    else:
        with pytest.raises(Forbidden):
            check()


@pytest.mark.parametrize(
    ("entrypoint", "runtime"),
    [
        (["/lambda-entrypoint.sh"], ["/lambda-entrypoint.sh"]),
        (["/usr/local/bin/aws-lambda-rie", "python3", "-m", "awslambdaric"],
         ["python3", "-m", "awslambdaric"]),
        (["aws-lambda-rie", "--log-level", "debug", "/bootstrap"], ["/bootstrap"]),
        (["aws-lambda-rie", "--enable-init-caching", "--log-level=info", "./main"], ["./main"]),
        ([], []),
    ],
)  # fmt: skip
def test_the_emulator_is_taken_off_an_entrypoint(entrypoint, runtime):
    assert without_emulator(entrypoint) == runtime


@pytest.mark.parametrize(
    ("image_entrypoint", "override"),
    [
        (["/usr/local/bin/aws-lambda-rie", "python3", "-m", "awslambdaric"],
         ("python3", "-m", "awslambdaric")),
        (["aws-lambda-rie", "--log-level", "debug", "/bootstrap"], ("/bootstrap",)),
        (["/lambda-entrypoint.sh"], ()),  # AWS's own: it skips the emulator by itself
        ([], ()),
    ],
)  # fmt: skip
def test_a_version_pins_an_emulator_images_entrypoint_without_it(image_entrypoint, override):
    assert emulator_override(image_entrypoint) == override
