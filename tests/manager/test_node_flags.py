"""The Node.js runtime starts with the same V8 flags on both backends."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hotpool.manager.runtimes import NODE_FLAGS, NODEJS_BOOTSTRAP, process_command

pytestmark = pytest.mark.unit

DOCKERFILE = Path(__file__).resolve().parents[2] / "deploy" / "runtimes" / "nodejs" / "Dockerfile"


def test_the_image_and_the_process_backend_pass_the_same_node_flags(tmp_path):
    (entrypoint,) = re.findall(r"^ENTRYPOINT (\[.*\])$", DOCKERFILE.read_text(), re.MULTILINE)
    image = json.loads(entrypoint)
    process = process_command("nodejs", tmp_path)
    # the flags sit between the node binary and the bootstrap in both command lines
    assert image[1 : 1 + len(NODE_FLAGS)] == list(NODE_FLAGS)
    assert process[1:] == [*NODE_FLAGS, str(NODEJS_BOOTSTRAP)]
