"""A function's env cannot set the variables the runtime reserves (Lambda's list): a deploy
naming one is a 400 naming it, and nothing is deployed. Credentials stay settable."""

from __future__ import annotations

import pytest

from hotpool.shared.function_env import RESERVED_ENV
from tests.helpers import handler_zip

pytestmark = pytest.mark.integration

CODE = handler_zip("import os\nreturn os.environ.get('AWS_ACCESS_KEY_ID')")


@pytest.mark.parametrize("name", sorted(RESERVED_ENV))
async def test_reserved_name_refused_and_nothing_deployed(hotpool_stack, name):
    stack = await hotpool_stack()
    resp = await stack.deploy("reserved", CODE, env={"OTHER": "x", name: "us-west-2"})
    assert resp.status == 400
    body = await resp.json()
    assert name in body["error"]["message"]
    assert (await stack.client.get("/v1/functions/reserved")).status == 404


async def test_reserved_name_refused_on_a_new_version_too(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("keeps", CODE)).status == 201
    resp = await stack.deploy("keeps", CODE, env={"AWS_REGION": "eu-west-1"})
    assert resp.status == 400 and "AWS_REGION" in (await resp.json())["error"]["message"]
    current = await (await stack.client.get("/v1/functions/keeps")).json()
    assert (current["version"], current["env"]) == (1, {})


async def test_credentials_stay_settable(hotpool_stack):
    stack = await hotpool_stack()
    resp = await stack.deploy("creds", CODE, env={"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"})
    assert resp.status == 201, await resp.text()
    assert await (await stack.invoke("creds")).json() == "AKIDEXAMPLE"
