"""Schemathesis against a live embedded stack: cases generated from the OpenAPI document.

What it holds the API to: no 5xx but a function error (a deployed function and valid input
leave no room for 502/503/504), answers that match the document, and no state changed by
a request that did not succeed (BRIEF §3 invariant 6).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.errors import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hotpool.main_server.openapi import openapi_document
from hotpool.main_server.state import FUNCTIONS
from tests.helpers import handler_zip

pytestmark = pytest.mark.integration

TARGET = "fuzzfn"
MAX_EXAMPLES = 25
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same cases on every run
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Run:
    """What the fuzz run did: cases sent, failures, and what its 2xx answers changed."""

    cases: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    deployed: set[tuple[str, int]] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    packages: set[str] = field(default_factory=set)
    keys_created: set[str] = field(default_factory=set)
    keys_revoked: set[str] = field(default_factory=set)


# a zip is bytes like any binary body (the deploy and layer routes take application/zip)
schemathesis.serializer.alias("application/zip", "application/octet-stream")


def _qualified(namespace: str, name: str) -> str:
    return name if namespace == "default" else f"{namespace}.{name}"


def _note_success(run: Run, method: str, path: str, body: Any) -> None:
    if method == "PUT" and path == "/v1/functions/{name}":
        run.deployed.add((_qualified(body["namespace"], body["name"]), body["version"]))
        run.packages.add(body["code_sha256"])
    elif method == "PUT" and path == "/v1/layers/{name}":
        run.packages.add(body["code_sha256"])
    elif method == "DELETE" and path == "/v1/functions/{name}":
        run.deleted.add(_qualified(body["namespace"], body["deleted"]))
    elif method == "POST" and path == "/v1/keys":
        run.keys_created.add(body["key_id"])
    elif method == "DELETE" and path == "/v1/keys/{key_id}":
        run.keys_revoked.add(body["revoked"])


def _send(run: Run, case: Any, base_url: str, auth: dict[str, str], session: Any) -> None:
    run.cases += 1
    response = case.call(base_url=base_url, headers=auth, session=session, timeout=60)
    run.statuses[f"{case.method} {case.path} {response.status_code}"] += 1
    where = f"{case.method} {case.formatted_path} -> {response.status_code}"
    reproduce = case.as_curl_command(headers={"Authorization": "Bearer $KEY"}, base_url=base_url)
    function_error = response.headers.get("X-Hotpool-Function-Error")
    if response.status_code >= 500 and not (response.status_code == 500 and function_error):
        run.failures.append(f"server error: {where}\n{response.text[:500]}\n{reproduce}")
        return
    try:
        case.validate_response(response, checks=CHECKS, headers=auth)
    except (AssertionError, FailureGroup) as exc:  # a check failed: report them all
        run.failures.append(f"check failed: {where}\n{str(exc)[:1500]}\n{reproduce}")
    if 200 <= response.status_code < 300:
        _note_success(run, case.method, case.path, response.json())


def _strategies(schema: Any) -> list[tuple[str, Any]]:
    """Every operation, positive and negative; those on one function also aimed at TARGET."""
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            found.append((f"{operation.label} {mode}", operation.as_strategy(generation_mode=mode)))
            if "{name}" in operation.path and operation.method.upper() != "DELETE":
                aimed = operation.as_strategy(
                    generation_mode=mode, path_parameters={"name": TARGET}
                )
                found.append((f"{operation.label} {mode} at {TARGET}", aimed))
    return found


def fuzz(base_url: str, auth: dict[str, str]) -> Run:
    """Run every strategy against ``base_url``; blocking, so call it from a worker thread."""
    schema = schemathesis.openapi.from_dict(openapi_document())
    # the key is sent on every case, and unknown query parameters are ignored by design
    # (but for the settings of a deploy, which refuses them: tests/main_server/test_bad_input)
    schema.config.generation.update(with_security_parameters=False, allow_extra_parameters=False)
    run = Run()
    with requests.Session() as session:
        for label, strategy in _strategies(schema):

            @FUZZ_SETTINGS
            @given(case=strategy)
            def one(case: Any) -> None:
                _send(run, case, base_url, auth, session)

            try:
                one()
            except Unsatisfiable:
                pass  # nothing of it can be made invalid (GET /healthz has no input)
            except Exception as exc:  # generation impossible, or the transport broke
                run.failures.append(f"{label}: {type(exc).__name__}: {exc}")
    return run


async def _state(stack: Any) -> tuple[dict[str, int], dict[str, bool], set[str]]:
    """Functions (every namespace) with their versions, keys with revoked flags, packages."""
    listed = await (await stack.client.get("/v1/functions")).json()
    functions = {fv.name: fv.version for fv in await stack.client.app[FUNCTIONS].list()}
    assert {f["name"]: f["version"] for f in listed["functions"]}.items() <= functions.items()
    listed_keys = await (await stack.client.get("/v1/keys")).json()
    keys = {k["key_id"]: k["revoked"] for k in listed_keys["keys"]}
    packages = {p.name for p in stack.settings.code_dir.rglob("*") if p.is_file()}
    return functions, keys, packages


def _unexplained(before: tuple, after: tuple, run: Run) -> list[str]:
    functions_before, keys_before, packages_before = before
    functions_after, keys_after, packages_after = after
    problems = []
    for name, version in functions_after.items():
        if functions_before.get(name) != version and (name, version) not in run.deployed:
            problems.append(f"function {name} v{version} was not deployed by a 2xx")
    for name in functions_before.keys() - functions_after.keys():
        if name not in run.deleted:
            problems.append(f"function {name} vanished without a 2xx DELETE")
    for key_id, revoked in keys_after.items():
        if key_id not in keys_before and key_id not in run.keys_created:
            problems.append(f"key {key_id} was not created by a 2xx")
        if revoked and not keys_before.get(key_id) and key_id not in run.keys_revoked:
            problems.append(f"key {key_id} was revoked without a 2xx DELETE")
    for package in packages_after - packages_before:
        if not any(package.startswith(sha) for sha in run.packages):
            problems.append(f"code package {package} was stored without a 2xx deploy")
    return problems


@pytest.mark.timeout(150)
async def test_fuzzed_requests_get_no_5xx_and_change_nothing_unless_accepted(hotpool_stack):
    # the run sends hundreds of requests a second on one key: lift the rate limit
    stack = await hotpool_stack(rate_per_s=1_000_000.0, rate_burst=1_000_000)
    deployed = await stack.deploy(TARGET, handler_zip("return event"))
    assert deployed.status == 201, await deployed.text()
    warm = await stack.invoke(TARGET, {"warm": True})
    assert warm.status == 200, await warm.text()
    server = stack.client.server
    base_url = f"http://{server.host}:{server.port}"
    auth = {"Authorization": stack.client.session.headers["Authorization"]}

    before = await _state(stack)
    # the stack serves on this event loop, so the blocking client runs in a thread
    run = await asyncio.to_thread(fuzz, base_url, auth)
    after = await _state(stack)

    for outcome, count in sorted(run.statuses.items()):
        print(f"{count:5} {outcome}")
    for failure in run.failures:
        print(f"\n--- {failure}")
    print(f"\nfuzz cases run: {run.cases}")
    assert run.cases > 0
    assert run.failures == []
    assert _unexplained(before, after, run) == []


# Bodies the fuzzer sent (before the document refused unknown form fields) that aiohttp's
# multipart reader cannot parse: each raised out of the handler as a 500.
MALFORMED_MULTIPART = {
    "a control character in a part header": (
        b'--b\r\nContent-Disposition: form-data; name="\x01"\r\n\r\nx\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
    ),
    "no boundary": (b"--b\r\n\r\n", "multipart/form-data"),
    "cut short": (
        b'--b\r\nContent-Disposition: form-data; name="code"; filename="c"\r\n\r\nabc',
        "multipart/form-data; boundary=b",
    ),
    "no starting boundary": (b"hello", "multipart/form-data; boundary=b"),
}


@pytest.mark.parametrize("label", sorted(MALFORMED_MULTIPART))
async def test_a_malformed_multipart_deploy_is_a_400_and_changes_nothing(hotpool_stack, label):
    stack = await hotpool_stack()
    before = await _state(stack)
    body, content_type = MALFORMED_MULTIPART[label]
    resp = await stack.client.put(
        "/v1/functions/mp", data=body, headers={"Content-Type": content_type}
    )
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "InvalidRequest"
    assert await _state(stack) == before
