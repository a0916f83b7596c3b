"""Container-image functions (``image=...``) on the Docker backend, end to end: a Lambda-style
image nobody here wrote the runtime side of (AWS's awslambdaric, built by
tests/lambda_image/build.sh) deployed, invoked, pinned to its image ID, and removed without
a trace."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiodocker
import pytest

from hotpool.manager.docker_images import resolve_image
from hotpool.shared.errors import NotFound
from tests.services import LAMBDA_IMAGE, missing_service
from tests.stack import wait_for

pytestmark = pytest.mark.integration

REPOSITORY = LAMBDA_IMAGE.rpartition(":")[0]


@pytest.fixture
def stack_backend() -> str:
    return "docker"


@pytest.fixture
async def docker():
    async with aiodocker.Docker() as client:
        for tag in (LAMBDA_IMAGE, f"{LAMBDA_IMAGE}-v2"):
            try:
                await client.images.inspect(tag)
            except aiodocker.DockerError as exc:
                missing_service(f"no test image {tag} ({exc}): run tests/lambda_image/build.sh")
        yield client


@pytest.fixture
async def image_stack(hotpool_stack, docker):
    """A stack allowing the test image's repository."""
    return await hotpool_stack(image_allow=REPOSITORY.partition("/")[0] + "/")


async def leftovers(docker: aiodocker.Docker, manager_id: str) -> list[str]:
    """Containers of either kind this Manager made that still exist."""
    found = []
    for label in ("hotpool.manager", "hotpool.image-manager"):
        filters = f'{{"label": ["{label}={manager_id}"]}}'
        found += [c.id for c in await docker.containers.list(all=True, filters=filters)]
    return found


async def test_an_image_function_answers_through_its_own_runtime_client(image_stack):
    stack = image_stack
    resp = await stack.client.put("/v1/functions/imgfn", params={"image": LAMBDA_IMAGE})
    assert resp.status == 201, await resp.text()
    version = await resp.json()
    assert version["image"] == LAMBDA_IMAGE and version["image_id"].startswith("sha256:")
    assert version["runtime"] == "provided"

    resp = await stack.invoke("imgfn", {"a": 1})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["variant"] == "v1" and body["event"] == {"a": 1}
    assert body["function_name"] == "imgfn"
    assert body["uid"] == 10001  # the image's root user is not the container's
    [record] = await stack.records("imgfn", 1)
    assert record["status"] == "success" and record["cold_start"] is True
    assert body["request_id"] == record["request_id"]
    # what the image's handler printed, through Docker, the Manager and the relay
    assert record["stdout"] == "hello from the image\n", record

    again = await stack.invoke("imgfn", {"b": 2})  # the warm container, the same pair
    assert (await again.json())["event"] == {"b": 2}
    assert len(stack.live_containers()) == 1


async def test_an_exception_in_the_image_is_a_function_error_in_lambdas_shape(image_stack):
    stack = image_stack
    assert (await stack.client.put("/v1/functions/imgfail", params={"image": LAMBDA_IMAGE})).ok
    resp = await stack.invoke("imgfail", {"fail": True})
    assert resp.status == 500
    assert resp.headers.get("X-Hotpool-Function-Error")
    error = await resp.json()
    assert "asked to fail" in str(error)
    assert "ValueError" in str(error)
    ok = await stack.invoke("imgfail", {})  # the runtime serves on after a function error
    assert ok.status == 200


async def test_a_version_keeps_its_image_when_the_tag_moves(image_stack, docker):
    stack = image_stack
    tag = f"pin-{uuid.uuid4().hex[:8]}"
    moving = f"{REPOSITORY}:{tag}"
    try:
        await docker.images.tag(LAMBDA_IMAGE, REPOSITORY, tag=tag)
        first = await stack.client.put("/v1/functions/pinned", params={"image": moving})
        assert first.status == 201, await first.text()
        await docker.images.tag(f"{LAMBDA_IMAGE}-v2", REPOSITORY, tag=tag)  # the tag moves
        resp = await stack.invoke("pinned", {})
        assert (await resp.json())["variant"] == "v1"  # the version runs what it pinned

        second = await stack.client.put("/v1/functions/pinned", params={"image": moving})
        assert second.status == 200, await second.text()
        assert (await second.json())["image_id"] != (await first.json())["image_id"]
        resp = await stack.invoke("pinned", {})
        assert (await resp.json())["variant"] == "v2"
    finally:
        await docker.images.delete(moving)


async def test_removing_an_image_function_leaves_no_container(image_stack, docker):
    stack = image_stack
    assert (await stack.client.put("/v1/functions/imggone", params={"image": LAMBDA_IMAGE})).ok
    assert (await stack.invoke("imggone", {})).status == 200
    manager_id = stack.settings.manager_id
    assert len(await leftovers(docker, manager_id)) == 2  # the relay and the function's own
    assert (await stack.client.delete("/v1/functions/imggone")).status == 200

    async def gone() -> bool:
        return not await leftovers(docker, manager_id)

    assert await wait_for(gone), await leftovers(docker, manager_id)
    assert stack.live_containers() == set()


async def test_the_function_container_ending_ends_the_pair(image_stack, docker):
    stack = image_stack
    assert (await stack.client.put("/v1/functions/imgdie", params={"image": LAMBDA_IMAGE})).ok
    assert (await stack.invoke("imgdie", {})).status == 200
    manager_id = stack.settings.manager_id
    filters = f'{{"label": ["hotpool.image-manager={manager_id}"]}}'
    [function] = await docker.containers.list(filters=filters)
    await function.kill()

    async def gone() -> bool:
        return not await leftovers(docker, manager_id) and not stack.live_containers()

    assert await wait_for(gone), await leftovers(docker, manager_id)
    assert (await stack.invoke("imgdie", {"after": 1})).status == 200  # a new pair


async def test_an_unknown_image_or_an_image_id_is_refused_with_404(image_stack, docker):
    stack = image_stack
    unknown = f"{REPOSITORY}:no-such-tag-{uuid.uuid4().hex[:6]}"
    resp = await stack.client.put("/v1/functions/nope", params={"image": unknown})
    assert resp.status == 404 and "not on this Docker daemon" in await resp.text()
    assert (await stack.client.get("/v1/functions/nope")).status == 404


async def test_an_image_id_prefix_is_no_name(docker):
    """Docker resolves the prefix of an image ID as a reference: an allow-list prefix that
    happens to be hex must not let a tenant name any image on the host that way."""
    image_id = (await docker.images.inspect(LAMBDA_IMAGE))["Id"]
    with pytest.raises(NotFound):
        await resolve_image(docker, image_id.split(":")[1][:12])
    resolved = await resolve_image(docker, LAMBDA_IMAGE)
    assert resolved["image_id"] == image_id
    assert resolved["entrypoint"] == ["/lambda-entrypoint.sh"]
    assert resolved["command"] == ["app.handler"]


async def test_image_config_overrides_and_an_emulator_entrypoint(image_stack):
    """Lambda's ImageConfig: the entrypoint and command given at deploy replace the image's.
    An entrypoint that starts AWS's emulator loses it: the emulator would take the relay's
    ports, and the runtime command after it talks to the relay instead."""
    stack = image_stack
    params = {
        "image": LAMBDA_IMAGE,
        "image_entrypoint": '["/usr/local/bin/aws-lambda-rie", "--log-level", "error", '
        '"/usr/bin/python3", "-m", "awslambdaric"]',
        "image_command": '["app.handler"]',
        "image_workdir": "/var/task",
    }
    resp = await stack.client.put("/v1/functions/imgcfg", params=params)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["image_command"] == ["app.handler"]
    resp = await stack.invoke("imgcfg", {"over": "ridden"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["event"] == {"over": "ridden"}


async def test_each_call_of_an_image_function_records_its_own_output(image_stack):
    """Output comes through Docker a moment after it was written: each record still has its
    call's line once, none lost and none in the next call's record."""
    stack = image_stack
    assert (await stack.client.put("/v1/functions/imgout", params={"image": LAMBDA_IMAGE})).ok
    calls = 20  # the records route's page
    for n in range(calls):
        assert (await stack.invoke("imgout", {"n": n})).status == 200
    records = await stack.records("imgout", calls)
    outputs = [record["stdout"] for record in records]
    assert outputs == ["hello from the image\n"] * calls, outputs


async def test_the_hello_image_example_runs_as_an_image_function(image_stack, docker, tmp_path):
    """examples/hello_image's handler, in the test image's layout (its Dockerfile's AWS base
    cannot be pulled here): its answer, and its output in the record."""
    example = Path(__file__).parents[2] / "examples" / "hello_image"
    (tmp_path / "app.py").write_text((example / "app.py").read_text())
    (tmp_path / "Dockerfile").write_text(
        f'FROM {LAMBDA_IMAGE}\nCOPY app.py /var/task/app.py\nCMD ["app.handler"]\n'
    )
    tag = f"{REPOSITORY}:hello-{uuid.uuid4().hex[:8]}"
    build = await asyncio.create_subprocess_exec(
        "docker", "build", "-q", "-t", tag, str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, errors = await build.communicate()
    assert build.returncode == 0, errors.decode()
    try:
        assert (await image_stack.client.put("/v1/functions/hello_image", params={"image": tag})).ok
        resp = await image_stack.invoke("hello_image", {"name": "image"})
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["message"] == "Hello, image!"
        [record] = await image_stack.records("hello_image", 1)
        assert body["requestId"] == record["request_id"]
        assert record["stdout"] == "greeting image\n"
    finally:
        await image_stack.client.delete("/v1/functions/hello_image")
        await docker.images.delete(tag, force=True)
