"""The function container's create body of a container-image function (manager.docker_images),
and whether Main is on a Docker backend's host (manager.docker_backend): tables, no Docker."""

from __future__ import annotations

import pytest

from hotpool.manager.backend import ContainerSpec, ImageRun
from hotpool.manager.docker_backend import is_loopback
from hotpool.manager.docker_images import RUNTIME_API, function_config
from hotpool.manager.specialise import CreateRequest
from hotpool.shared.images import IMAGE_HANDLER
from hotpool.shared.models import FunctionConfig

pytestmark = pytest.mark.unit

IMAGE_ID = "sha256:" + "ab" * 32
RELAY = {"User": "10001:10001", "HostConfig": {"Memory": 1, "PortBindings": {"8080/tcp": []}}}


def create_body(run: ImageRun) -> dict:
    spec = ContainerSpec(runtime="provided", memory_mb=256, image=run)
    return function_config(spec, run, "relay-id", RELAY, "mgr-1")


@pytest.mark.parametrize(
    ("entrypoint", "runs"),
    [
        # a deployer's image_entrypoint is kept as given at deploy: the emulator comes off here
        (("/usr/local/bin/aws-lambda-rie", "--log-level", "error", "python3", "-m", "awslambdaric"),
         ["python3", "-m", "awslambdaric"]),
        (("python3", "-m", "awslambdaric"), ["python3", "-m", "awslambdaric"]),
    ],
)  # fmt: skip
def test_the_function_container_never_starts_the_emulator(entrypoint, runs):
    body = create_body(ImageRun(IMAGE_ID, entrypoint=entrypoint, command=("app.handler",)))
    assert body["Entrypoint"] == runs
    assert body["Cmd"] == ["app.handler"]
    assert f"AWS_LAMBDA_RUNTIME_API={RUNTIME_API}" in body["Env"]


def test_without_an_override_the_image_runs_its_own_entrypoint():
    body = create_body(ImageRun(IMAGE_ID))
    assert "Entrypoint" not in body and "Cmd" not in body
    assert body["Image"] == IMAGE_ID
    assert body["HostConfig"]["NetworkMode"] == "container:relay-id"
    assert "PortBindings" not in body["HostConfig"]


@pytest.mark.parametrize(
    ("settings", "level"),
    [({}, None), ({"log_format": "json"}, "INFO"), ({"log_level": "DEBUG"}, "DEBUG")],
)
def test_the_image_gets_a_log_level_beside_the_json_format_as_on_lambda(settings, level):
    # awslambdaric, the usual entry point of an image, filters on AWS_LAMBDA_LOG_LEVEL alone
    config = FunctionConfig.from_dict(
        {"image": "hello:1", "image_id": IMAGE_ID, "runtime": "provided",
         "handler": IMAGE_HANDLER, **settings}
    )  # fmt: skip
    run = CreateRequest("fn", 1, "", config).spec("mgr-1").image
    assert run is not None and run.env.get("AWS_LAMBDA_LOG_LEVEL") == level


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("localhost", True),
     ("10.0.0.5", False), ("0.0.0.0", False), ("node-3.internal", False)],
)  # fmt: skip
def test_main_is_on_this_host_when_the_advertised_address_is_a_loopback_one(host, loopback):
    assert is_loopback(host) is loopback
