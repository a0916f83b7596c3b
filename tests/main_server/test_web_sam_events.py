"""The web route's events have the shape of the sample events ``sam local generate-event``
writes (``apigateway http-api-proxy`` and ``aws-proxy``), the events Lambda apps are tested
with: every field of the sample is there, with the same JSON type.

The samples ship in the aws-sam-cli wheel (samcli/lib/generated_sample_events); the wheel is
downloaded once per machine, never committed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import handler_zip
from tests.services import missing_service

pytestmark = pytest.mark.integration

SAM_VERSION = "1.170.0"
CACHE = Path.home() / ".cache" / "hotpool-tests" / f"aws-sam-cli-{SAM_VERSION}"
SAMPLES = "samcli/lib/generated_sample_events/events/apigateway/"
ECHO_EVENT = handler_zip(
    "return {'statusCode': 200, 'body': json.dumps(event)}", prelude="import json"
)
# what function URLs leave out or set to null (their documentation says so), and what a
# sample only has because its API has it (stage variables, an authorizer, mTLS)
ABSENT_2_0 = {"pathParameters", "stageVariables", "authorizer"}
NULL_OK = {"authentication", "stageVariables", "pathParameters", "queryStringParameters",
           "multiValueQueryStringParameters", "body"}  # fmt: skip


@pytest.fixture(scope="module")
def samples() -> dict[str, Any]:
    wheels = list(CACHE.glob("aws_sam_cli-*.whl"))
    if not wheels:
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", f"aws-sam-cli=={SAM_VERSION}", "--no-deps",
             "-q", "-d", str(CACHE)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        wheels = list(CACHE.glob("aws_sam_cli-*.whl"))
        if done.returncode != 0 or not wheels:
            missing_service(f"could not download aws-sam-cli from PyPI: {done.stderr[-300:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        return {
            name: json.loads(wheel.read(SAMPLES + name))
            for name in ("HttpApi.json", "AwsProxy.json")
        }


def _missing(sample: Any, ours: Any, where: str = "") -> list[str]:
    """Fields of ``sample`` that ``ours`` lacks or types differently."""
    problems = []
    for key, value in sample.items():
        path = f"{where}.{key}" if where else key
        if key not in ours:
            problems.append(f"{path} missing")
            continue
        mine = ours[key]
        placeholder = isinstance(value, str) and value.startswith("{{{")
        if mine is None and (key in NULL_OK or value is None):
            continue
        if isinstance(value, dict) and isinstance(mine, dict):
            if key not in ("headers", "multiValueHeaders", "queryStringParameters",
                           "multiValueQueryStringParameters", "pathParameters"):  # fmt: skip
                problems += _missing(value, mine, path)
        elif not placeholder and value is not None and type(value) is not type(mine):
            problems.append(f"{path}: {type(mine).__name__}, the sample has {type(value).__name__}")
    return problems


async def _event(stack, name: str) -> dict[str, Any]:
    resp = await stack.client.post(
        f"/fn/{name}/path/to/resource?foo=bar", data=b"\x00binary",
        headers={"Content-Type": "application/octet-stream", "Cookie": "c=1"},
    )  # fmt: skip
    assert resp.status == 200, await resp.text()
    return json.loads(await resp.read())


async def test_payload_2_0_has_every_field_of_the_http_api_sample(hotpool_stack, samples):
    stack = await hotpool_stack()
    assert (await stack.deploy("v2", ECHO_EVENT)).status == 201
    event = await _event(stack, "v2")
    sample = {k: v for k, v in samples["HttpApi.json"].items() if k not in ABSENT_2_0}
    sample["requestContext"] = {
        k: v for k, v in sample["requestContext"].items() if k not in ABSENT_2_0
    }
    assert _missing(sample, event) == []


async def test_payload_1_0_has_every_field_of_the_rest_api_sample(hotpool_stack, samples):
    stack = await hotpool_stack()
    assert (await stack.deploy("v1", ECHO_EVENT, http_payload="1.0")).status == 201
    event = await _event(stack, "v1")
    assert _missing(samples["AwsProxy.json"], event) == []
