"""Contract tests of shared.layer_store.SqlLayerStore and of a deploy resolving its layers,
over SQLite (the embedded default) and MariaDB (production), on migrated databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hotpool.shared.errors import InvalidRequest, NotFound
from hotpool.shared.layer_store import SqlLayerStore
from hotpool.shared.metadata import SqlMetadataStore
from hotpool.shared.models import FunctionConfig
from hotpool.shared.schema import migrate

pytestmark = pytest.mark.contract


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[tuple[SqlMetadataStore, SqlLayerStore]]:
    await migrate(database_url)
    metadata = SqlMetadataStore.from_url(database_url)
    try:
        yield metadata, SqlLayerStore(metadata)
    finally:
        await metadata.close()


def key(n: int) -> str:
    return f"{n:064x}.zip"


async def publish(layers: SqlLayerStore, name: str, n: int, namespace: str = "default"):
    return await layers.publish(
        namespace, name, sha256=f"{n:064x}", code_key=key(n), size=100 + n, description=f"v{n}"
    )


async def deploy(metadata: SqlMetadataStore, name: str, n: int, *layers: str):
    config = FunctionConfig(layers=tuple(layers))
    return await metadata.create_version(name, config, f"{n:064x}", key(n))


async def test_versions_are_numbered_from_one_per_layer_and_namespace(stores):
    _, layers = stores
    first = await publish(layers, "deps", 1)
    second = await publish(layers, "deps", 2)
    other = await publish(layers, "tools", 3)
    elsewhere = await publish(layers, "deps", 4, namespace="acme")

    assert [first.version, second.version, other.version, elsewhere.version] == [1, 2, 1, 1]
    assert second.to_dict() | {"created_at": None} == {
        "name": "deps", "namespace": "default", "version": 2, "code_sha256": f"{2:064x}",
        "size": 102, "description": "v2", "created_at": None,
    }  # fmt: skip
    assert second.code_key == key(2)


async def test_get_versions_and_latest_of_each_stay_in_their_namespace(stores):
    _, layers = stores
    await publish(layers, "deps", 1)
    await publish(layers, "deps", 2)
    await publish(layers, "tools", 3)
    await publish(layers, "secret", 4, namespace="acme")

    assert (await layers.get("default", "deps", 1)).code_key == key(1)
    assert [v.version for v in await layers.versions("default", "deps")] == [2, 1]
    assert [v.ref for v in await layers.latest_of_each("default")] == ["deps:2", "tools:1"]
    assert [v.ref for v in await layers.latest_of_each("acme")] == ["secret:1"]
    with pytest.raises(NotFound):
        await layers.get("default", "secret", 1)
    with pytest.raises(NotFound):
        await layers.versions("default", "secret")
    with pytest.raises(NotFound):
        await layers.get("default", "deps", 3)


async def test_a_deleted_version_is_gone_and_its_number_is_never_given_again(stores):
    _, layers = stores
    await publish(layers, "deps", 1)
    await publish(layers, "deps", 2)

    deleted, unused = await layers.delete("default", "deps", 2)

    assert deleted.version == 2 and unused == [key(2)]
    with pytest.raises(NotFound):
        await layers.get("default", "deps", 2)
    with pytest.raises(NotFound):
        await layers.delete("default", "deps", 2)
    assert [v.ref for v in await layers.latest_of_each("default")] == ["deps:1"]
    assert (await publish(layers, "deps", 3)).version == 3


async def test_a_deploy_resolves_its_layers_in_order_to_their_packages(stores):
    metadata, layers = stores
    await publish(layers, "deps", 1)
    await publish(layers, "tools", 2)

    fv = await deploy(metadata, "echo", 9, "tools:1", "deps:1")

    assert fv.layer_keys == (key(2), key(1))
    assert fv.config.layers == ("tools:1", "deps:1")
    assert (await metadata.latest("echo")).layer_keys == (key(2), key(1))
    assert (await deploy(metadata, "plain", 8)).layer_keys == ()


@pytest.mark.parametrize("missing", ["tools:2", "nope:1", "gone:1", "acme-only:1"])
async def test_a_deploy_naming_a_missing_layer_is_refused_naming_it(stores, missing):
    metadata, layers = stores
    await publish(layers, "deps", 1)
    await publish(layers, "tools", 4)
    await publish(layers, "gone", 2)
    await layers.delete("default", "gone", 1)
    await publish(layers, "acme-only", 3, namespace="acme")

    with pytest.raises(InvalidRequest, match=f"layer '{missing}' does not exist"):
        await deploy(metadata, "echo", 9, "deps:1", missing)
    with pytest.raises(NotFound):  # and nothing was created
        await metadata.latest("echo")


async def test_a_layer_in_a_namespace_serves_that_namespace_only(stores):
    metadata, layers = stores
    await publish(layers, "deps", 1, namespace="acme")

    assert (await deploy(metadata, "acme.echo", 9, "deps:1")).layer_keys == (key(1),)
    with pytest.raises(InvalidRequest, match="namespace 'default'"):
        await deploy(metadata, "echo", 9, "deps:1")


async def test_a_deleted_layer_keeps_its_package_while_a_function_version_uses_it(stores):
    metadata, layers = stores
    await publish(layers, "deps", 1)
    await deploy(metadata, "echo", 9, "deps:1")

    _, unused = await layers.delete("default", "deps", 1)

    assert unused == []  # echo v1 still runs on it
    assert (await metadata.latest("echo")).layer_keys == (key(1),)
    # a second version keeps the first: nothing to collect
    await deploy(metadata, "echo", 10)
    assert await metadata.prune("echo", 2) == []


async def test_pruning_the_last_user_of_a_deleted_layer_collects_its_package(stores):
    metadata, layers = stores
    await publish(layers, "deps", 1)
    await publish(layers, "live", 2)
    await deploy(metadata, "echo", 9, "deps:1", "live:1")
    await layers.delete("default", "deps", 1)
    await deploy(metadata, "echo", 10)

    # echo v1's own package and the deleted layer's go; the live layer's stays
    assert sorted(await metadata.prune("echo", 1)) == sorted([key(9), key(1)])


async def test_a_package_shared_with_a_live_layer_or_a_function_is_kept(stores):
    metadata, layers = stores
    await publish(layers, "deps", 1)
    await publish(layers, "copy", 1)  # the same zip published twice
    await publish(layers, "code", 7)
    await deploy(metadata, "echo", 7)  # a function whose zip is that layer's

    assert (await layers.delete("default", "deps", 1))[1] == []
    assert (await layers.delete("default", "code", 1))[1] == []
    assert (await layers.delete("default", "copy", 1))[1] == [key(1)]


async def test_a_deploy_racing_a_layer_deletion_never_loses_the_package(stores):
    """Either the deploy sees the version gone (and fails), or the deletion sees the deploy
    using the package (and keeps it): never a version whose layer package was deleted."""
    metadata, layers = stores
    outcomes = set()

    async def later(delay_s: float, work):
        await asyncio.sleep(delay_s)
        return await work

    for n in range(-10, 11):
        await publish(layers, f"l{n + 10}", n + 20)
        # the deletion starts 50 ms earlier, then closer and closer, then up to 50 ms later:
        # each side wins at the ends, and in the middle they overlap
        deployed, deleted = await asyncio.gather(
            later(max(-n, 0) * 0.005, deploy(metadata, f"fn{n + 10}", 100 + n, f"l{n + 10}:1")),
            later(max(n, 0) * 0.005, layers.delete("default", f"l{n + 10}", 1)),
            return_exceptions=True,
        )
        assert not isinstance(deleted, BaseException), deleted
        if isinstance(deployed, BaseException):
            assert isinstance(deployed, InvalidRequest), deployed
            assert deleted[1] == [key(n + 20)]  # nobody uses it: collected
            outcomes.add("deploy lost")
        else:
            assert deployed.layer_keys == (key(n + 20),)
            assert deleted[1] == []  # the new version uses it: kept
            outcomes.add("deploy won")
    assert outcomes == {"deploy lost", "deploy won"}


async def test_simultaneous_publishes_of_one_layer_take_distinct_numbers(stores):
    _, layers = stores

    published = await asyncio.gather(*(publish(layers, "deps", n) for n in range(1, 7)))

    assert sorted(v.version for v in published) == [1, 2, 3, 4, 5, 6]
