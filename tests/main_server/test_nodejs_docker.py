"""A Node.js function on the Docker backend, in the hotpool/runtime-nodejs image
(HOTPOOL_TEST_RUNTIME_IMAGE_NODEJS): the end-to-end cases of test_nodejs_stack.py, plus what
only the image shows: its Node (Debian bookworm's, 18 or later), its user, the read-only root
and layers at /opt (the half-close through Docker's port mapping:
tests/manager/test_bootstrap_nodejs_stream.py)."""

from __future__ import annotations

import pytest

from tests.helpers import make_zip
from tests.main_server.test_nodejs_stack import (  # noqa: F401  (collected here on Docker)
    deployed,
    test_a_node_async_generator_streams_through_main,
    test_a_node_function_deploys_with_its_default_handler_and_answers,
    test_a_node_function_error_is_a_function_error_in_lambdas_shape,
    test_the_web_route_gets_api_gateways_event_and_the_answer_shape,
)
from tests.services import RUNTIME_IMAGE_NODEJS
from tests.stack import require_docker

pytestmark = pytest.mark.integration

PROBE = make_zip(
    {
        "index.js": """
            const fs = require('fs');
            exports.handler = async () => {
              let writable = true;
              try { fs.writeFileSync('/var/runtime/x', 'x'); } catch (err) { writable = false; }
              return {
                node: process.versions.node, execEnv: process.env.AWS_EXECUTION_ENV,
                uid: process.getuid(), rootWritable: writable, layer: require('from-layer'),
                cwd: process.cwd(),
              };
            };
        """
    }
)
LAYER = make_zip({"nodejs/node_modules/from-layer/index.js": "module.exports = 'layer';\n"})


@pytest.fixture
async def stack_backend() -> str:
    await require_docker(RUNTIME_IMAGE_NODEJS)
    return "docker"


async def test_the_image_runs_node_unprivileged_on_a_read_only_root_with_layers(hotpool_stack):
    stack = await hotpool_stack()
    resp = await stack.client.put("/v1/layers/nodelib", data=LAYER,
                                  headers={"Content-Type": "application/zip"})  # fmt: skip
    assert resp.status == 201, await resp.text()
    await deployed(stack, "probe", PROBE, layers="nodelib:1")
    resp = await stack.invoke("probe", {})
    assert resp.status == 200, await resp.text()
    found = await resp.json()
    assert int(found["node"].split(".")[0]) >= 18
    assert found["execEnv"] == f"AWS_Lambda_nodejs{found['node'].split('.')[0]}.x"
    assert found["uid"] == 10001 and found["rootWritable"] is False
    assert (found["layer"], found["cwd"]) == ("layer", "/tmp/code")
