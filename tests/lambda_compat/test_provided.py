"""Custom runtimes (``runtime=provided``) through the whole stack: deployed, invoked, recorded.

Each runtime's Runtime API side is someone else's (``custom_runtimes``): a success, a function
error and an init error each, as Lambda reports them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from hotpool.shared.packages import zip_directory
from tests.lambda_compat import custom_runtimes
from tests.lambda_compat.harness import invoke, off_loop, output, record
from tests.lambda_compat.sources import COMMAND_TIMEOUT_S

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello_provided"

# name -> (package builder, handler, the type of its function error, of its init error)
RUNTIMES: dict[str, tuple[Callable[[], bytes], str, str, str]] = {
    # awslambdaric names an init error after the exception the module raised
    "awslambdaric": (custom_runtimes.awslambdaric_package, "app.handler", "ValueError",
                     "RuntimeError"),
    "node-ric": (custom_runtimes.node_ric_package, "index.handler", "Error", "Error"),
    "go": (custom_runtimes.go_package, "bootstrap", "MissingName", "Runtime.ConfigError"),
    "cpp": (custom_runtimes.cpp_package, "bootstrap", "MissingName", "Runtime.ConfigError"),
}  # fmt: skip
# the first run builds each package: npm's aws-lambda-ric compiles aws-lambda-cpp and curl
# (78 s on an idle 2-core machine, past 120 s on a busy one), so a test may take as long as
# a build is allowed to
BUILT_RUNTIMES = [pytest.param(name, marks=pytest.mark.timeout(COMMAND_TIMEOUT_S))
                  for name in sorted(RUNTIMES)]  # fmt: skip


async def deploy_provided(stack, name: str, code: bytes, handler: str, **extra) -> None:
    resp = await stack.deploy(name, code, runtime="provided", handler=handler, **extra)
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize("runtime", BUILT_RUNTIMES)
async def test_a_custom_runtime_answers_and_its_output_is_recorded(hotpool_stack, runtime):
    build, handler, _, _ = RUNTIMES[runtime]
    code = await off_loop(build)
    stack = await hotpool_stack()
    await deploy_provided(stack, f"{runtime}-fn", code, handler)
    resp, body = await invoke(stack, f"{runtime}-fn", {"name": "ada"})
    assert resp.status == 200, body
    request_id = resp.headers["X-Hotpool-Request-Id"]
    assert body["greeting"] == "hello ada"
    assert body["request_id"] == request_id
    rec = await record(stack, f"{runtime}-fn", request_id)
    assert rec["status"] == "success" and rec["cold_start"] is True
    assert f"handling {request_id}" in output(rec)
    # warm: the same runtime process answers the next event
    resp, body = await invoke(stack, f"{runtime}-fn", {"name": "grace"})
    assert (resp.status, body["greeting"]) == (200, "hello grace")
    assert (await record(stack, f"{runtime}-fn", resp.headers["X-Hotpool-Request-Id"]))[
        "cold_start"
    ] is False


@pytest.mark.parametrize("runtime", BUILT_RUNTIMES)
async def test_a_custom_runtimes_posted_error_is_the_calls_function_error(hotpool_stack, runtime):
    build, handler, error_type, _ = RUNTIMES[runtime]
    code = await off_loop(build)
    stack = await hotpool_stack()
    await deploy_provided(stack, f"{runtime}-err", code, handler)
    resp, body = await invoke(stack, f"{runtime}-err", {})
    assert resp.status >= 400, body
    assert resp.headers["X-Hotpool-Function-Error"] == error_type
    assert (body["errorType"], body["errorMessage"]) == (error_type, "no name given")
    assert body["requestId"] == resp.headers["X-Hotpool-Request-Id"]
    # the runtime lives on: the next call succeeds in the same container
    resp, body = await invoke(stack, f"{runtime}-err", {"name": "bob"})
    assert (resp.status, body["greeting"]) == (200, "hello bob")


@pytest.mark.parametrize("runtime", BUILT_RUNTIMES)
async def test_a_custom_runtimes_init_error_fails_the_cold_start(hotpool_stack, runtime):
    build, handler, _, init_error_type = RUNTIMES[runtime]
    code = await off_loop(build)
    stack = await hotpool_stack()
    await deploy_provided(stack, f"{runtime}-init", code, handler, env={"FAIL_INIT": "1"})
    resp, body = await invoke(stack, f"{runtime}-init", {"name": "x"})
    assert resp.status >= 400, body
    assert body["errorType"] == init_error_type, body
    assert "cannot load the configuration" in body["errorMessage"]


# --- AWS's tutorial shell runtime ---------------------------------------------------------------


def tutorial_bootstrap() -> str:
    """The tutorial's bootstrap: bash under #!/bin/sh, as Amazon Linux's sh is bash. Debian's
    sh (dash) has neither ``source`` nor ``pipefail``: on such a host the interpreter line
    names bash, the one change (the runtime image links sh to bash and runs it verbatim)."""
    if "bash" in os.path.realpath("/bin/sh"):
        return custom_runtimes.SHELL_BOOTSTRAP
    return custom_runtimes.SHELL_BOOTSTRAP.replace("#!/bin/sh", "#!/bin/bash", 1)


def shell_code(function: str | None = custom_runtimes.SHELL_FUNCTION) -> bytes:
    files = {"bootstrap": tutorial_bootstrap()}
    if function is not None:
        files["function.sh"] = function
    return custom_runtimes.provided_zip(files, ("bootstrap", "function.sh"))


async def test_the_tutorials_shell_runtime_echoes_the_event(hotpool_stack):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: AWS's shell bootstrap calls it")
    stack = await hotpool_stack()
    await deploy_provided(stack, "bash-runtime", shell_code(), "function.handler")
    resp, body = await invoke(stack, "bash-runtime", {"text": "Hello"})
    assert resp.status == 200, body
    # what the tutorial shows in response.txt (the event as hotpool's JSON encoder writes it)
    assert body == 'Echoing request: \'{"text":"Hello"}\''
    rec = await record(stack, "bash-runtime", resp.headers["X-Hotpool-Request-Id"])
    assert '{"text":"Hello"}' in rec["stderr"]  # the handler logs the event to stderr


async def test_the_provided_example_deploys_from_its_folder_with_the_default_handler(
    hotpool_stack,
):
    """examples/hello_provided as `hotpool deploy` zips it (the bootstrap stays executable),
    with no handler named: a provided function's default is function.handler, as the
    tutorial's is."""
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("curl or bash is not installed: AWS's shell bootstrap needs both")
    stack = await hotpool_stack()
    code = zip_directory(EXAMPLE)
    resp = await stack.deploy("hello-provided", code, runtime="provided")
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["handler"] == "function.handler"
    resp, body = await invoke(stack, "hello-provided", {"name": "Ada"})
    assert (resp.status, body) == (200, 'Echoing request: \'{"name":"Ada"}\'')


async def test_the_tutorials_shell_runtime_exiting_on_a_failing_handler_is_runtime_exit_error(
    hotpool_stack,
):
    # set -e: a handler that fails ends the bootstrap, which Lambda reports as Runtime.ExitError
    failing = 'function handler () {\n  echo "refusing $1" 1>&2\n  return 3\n}\n'
    code = shell_code(failing)
    stack = await hotpool_stack()
    await deploy_provided(stack, "bash-fails", code, "function.handler")
    resp, body = await invoke(stack, "bash-fails", {"n": 1})
    assert resp.status >= 400, body
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith("Runtime exited with error: exit status 3")
    rec = await record(stack, "bash-fails", resp.headers["X-Hotpool-Request-Id"])
    assert "refusing" in rec["stderr"]
    # the container ended with its runtime: the next call gets a new one, which works again
    resp, body = await invoke(stack, "bash-fails", {"n": 2})
    assert body["errorType"] == "Runtime.ExitError"


async def test_the_tutorials_shell_runtime_without_its_function_script_fails_init(hotpool_stack):
    code = shell_code(None)
    stack = await hotpool_stack()
    await deploy_provided(stack, "bash-noscript", code, "function.handler")
    resp, body = await invoke(stack, "bash-noscript", {})
    assert resp.status >= 400, body
    assert body["errorType"] == "Runtime.ExitError"
    assert "function.sh" in (await record(stack, "bash-noscript", body["requestId"]))["stderr"]
