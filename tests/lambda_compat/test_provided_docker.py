"""Custom runtimes on the Docker backend, in the hotpool/runtime-provided image: AWS's
tutorial shell bootstrap verbatim (the image's sh is bash, as Amazon Linux's), the Go and the
C++ function, and a runtime dying under a call."""

from __future__ import annotations

import aiodocker
import pytest

from tests.lambda_compat import custom_runtimes
from tests.lambda_compat.harness import invoke, off_loop, output, record
from tests.services import RUNTIME_IMAGE_PROVIDED, missing_service

pytestmark = pytest.mark.integration


@pytest.fixture
def stack_backend() -> str:
    return "docker"


@pytest.fixture
async def provided_stack(hotpool_stack):
    """A Docker-backed stack whose provided runtime is the image under test."""
    try:
        async with aiodocker.Docker() as docker:
            await docker.images.inspect(RUNTIME_IMAGE_PROVIDED)
    except Exception as exc:  # daemon down or image missing
        missing_service(
            f"the image {RUNTIME_IMAGE_PROVIDED} is unavailable ({exc}): build it with "
            "deploy/build-images.sh (HOTPOOL_RUNTIME_IMAGE_PROVIDED)"
        )
    return await hotpool_stack(runtime_image_provided=RUNTIME_IMAGE_PROVIDED)


async def deploy_provided(stack, name: str, code: bytes, handler: str) -> None:
    resp = await stack.deploy(name, code, runtime="provided", handler=handler)
    assert resp.status == 201, await resp.text()


async def test_the_tutorials_shell_runtime_runs_verbatim_in_the_image(provided_stack):
    stack = provided_stack
    await deploy_provided(
        stack, "bash-runtime", custom_runtimes.shell_package(), "function.handler"
    )
    resp, body = await invoke(stack, "bash-runtime", {"text": "Hello"})
    assert (resp.status, body) == (200, 'Echoing request: \'{"text":"Hello"}\'')
    rec = await record(stack, "bash-runtime", resp.headers["X-Hotpool-Request-Id"])
    assert '{"text":"Hello"}' in rec["stderr"]


@pytest.mark.parametrize("runtime", ["go", "cpp"])
async def test_a_compiled_runtime_answers_and_fails_in_the_image(provided_stack, runtime):
    build = {"go": custom_runtimes.go_package, "cpp": custom_runtimes.cpp_package}[runtime]
    stack = provided_stack
    await deploy_provided(stack, runtime, await off_loop(build), "bootstrap")
    resp, body = await invoke(stack, runtime, {"name": "ada"})
    assert (resp.status, body["greeting"]) == (200, "hello ada"), body
    rec = await record(stack, runtime, resp.headers["X-Hotpool-Request-Id"])
    assert f"handling {resp.headers['X-Hotpool-Request-Id']}" in output(rec)
    resp, body = await invoke(stack, runtime, {})
    assert (resp.status >= 400, body["errorType"]) == (True, "MissingName")
    resp, body = await invoke(stack, runtime, {"name": "bob"})  # the same warm container
    assert (resp.status, resp.headers["X-Hotpool-Cold-Start"]) == (200, "false")


async def test_a_runtime_dying_under_a_call_is_runtime_exit_error_in_the_image(provided_stack):
    stack = provided_stack
    failing = 'function handler () {\n  echo "refusing $1" 1>&2\n  return 3\n}\n'
    code = custom_runtimes.provided_zip(
        {"bootstrap": custom_runtimes.SHELL_BOOTSTRAP, "function.sh": failing},
        ("bootstrap", "function.sh"),
    )
    await deploy_provided(stack, "bash-fails", code, "function.handler")
    resp, body = await invoke(stack, "bash-fails", {"n": 1})
    assert resp.status >= 400, body
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith("Runtime exited with error: exit status 3")
