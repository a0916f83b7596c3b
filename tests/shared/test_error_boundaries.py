"""Each adapter translates its library's exceptions into hotpool's tree at one place: Docker
(``docker_errors``), S3 (``s3_errors``), Redis (``redis_errors``) and the metadata database
(``db_errors``). For every mapping: the hotpool class, its HTTP status, the message, and the
original exception as ``__cause__``; and every mapping lets an exception it does not know pass
unchanged."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import aiodocker
import aiohttp
import botocore.exceptions
import pytest
import redis.exceptions
import sqlalchemy.exc
from redis.asyncio.sentinel import MasterNotFoundError

from hotpool.manager.docker_errors import docker_errors
from hotpool.manager.docker_network import FUNCTION_NETWORK, ICC_OPTION, FunctionNetwork
from hotpool.shared.errors import (
    ContainerFailed,
    HotpoolError,
    NoCapacity,
    NotFound,
    RuntimeImageMissing,
    StoreUnavailable,
)
from hotpool.shared.metadata import db_errors, translate_errors
from hotpool.shared.redis_conn import redis_errors
from hotpool.shared.s3_codestore import s3_errors
from tests.services import RUNTIME_IMAGE

pytestmark = pytest.mark.unit

IMAGE = RUNTIME_IMAGE
DOCKER_DOWN = "Cannot connect to Docker Engine via unix:///run/docker.sock [No such file]"
DAEMON_UNREACHABLE = "the Docker daemon is unreachable: "
S3_DOWN = "S3 is unreachable: "
REDIS_DOWN = "the pool (Redis) is unreachable; try again shortly"
DB_DOWN = "the metadata database is unreachable: "


@dataclass(frozen=True)
class Case:
    boundary: Callable[[], contextlib.AbstractContextManager[None]]
    raised: BaseException
    expected: type[HotpoolError]
    status: int
    message: str  # the whole message, or its start when it ends with ": "


def s3_client_error(code: str | None, operation: str = "GetObject") -> Exception:
    error = {"Code": code, "Message": "a message from S3"} if code is not None else {}
    return botocore.exceptions.ClientError({"Error": error}, operation)


def db_error(cls: type[sqlalchemy.exc.DBAPIError], orig: Exception) -> Exception:
    """A DBAPIError as SQLAlchemy raises it: statement, parameters and the driver's error."""
    return cls("SELECT functions.id FROM functions", {}, orig)


def docker() -> contextlib.AbstractContextManager[None]:
    return docker_errors("Docker could not start the container")


def docker_create() -> contextlib.AbstractContextManager[None]:
    return docker_errors("Docker could not create the container", image=IMAGE)


def s3() -> contextlib.AbstractContextManager[None]:
    return s3_errors("packages/ab.zip")


def pool() -> contextlib.AbstractContextManager[None]:
    return redis_errors("the pool")


CASES = {
    # -- Docker (aiodocker) ------------------------------------------------------------
    "docker-404-image": Case(
        docker_create,
        aiodocker.DockerError(404, f"No such image: {IMAGE}"),
        RuntimeImageMissing,
        503,
        f"the runtime image {IMAGE!r} is missing; build it with "
        "hotpool images build (or deploy/build-images.sh)",
    ),
    "docker-404-other": Case(
        docker,
        aiodocker.DockerError(404, "No such container: c1"),
        ContainerFailed,
        502,
        "Docker could not start the container: [404] No such container: c1",
    ),
    "docker-409": Case(
        docker_create,
        aiodocker.DockerError(409, "Conflict"),
        ContainerFailed,
        502,
        "Docker could not create the container: [409] Conflict",
    ),
    "docker-500": Case(
        docker,
        aiodocker.DockerError(500, "driver failed programming external connectivity"),
        ContainerFailed,
        502,
        "Docker could not start the container: [500] driver failed programming external "
        "connectivity",
    ),
    "docker-container-error": Case(
        docker,
        aiodocker.exceptions.DockerContainerError(500, "cannot start", "c1"),
        ContainerFailed,
        502,
        "Docker could not start the container: [500] cannot start (container: c1)",
    ),
    # aiodocker's own status for a connection it could not make
    "docker-900": Case(
        docker_create,
        aiodocker.DockerError(900, DOCKER_DOWN),
        NoCapacity,
        503,
        DAEMON_UNREACHABLE + DOCKER_DOWN,
    ),
    "docker-disconnected": Case(
        docker, aiohttp.ServerDisconnectedError(), NoCapacity, 503, DAEMON_UNREACHABLE
    ),
    "docker-read-timeout": Case(
        docker,
        aiohttp.ServerTimeoutError("Timeout on reading data from socket"),
        NoCapacity,
        503,
        DAEMON_UNREACHABLE + "Timeout on reading data from socket",
    ),
    "docker-timeout": Case(
        docker, TimeoutError(), NoCapacity, 503, DAEMON_UNREACHABLE + "TimeoutError"
    ),
    "docker-oserror": Case(
        docker,
        ConnectionRefusedError(111, "Connection refused"),
        NoCapacity,
        503,
        DAEMON_UNREACHABLE + "[Errno 111] Connection refused",
    ),
    # -- S3 (botocore) -----------------------------------------------------------------
    "s3-no-such-key": Case(
        s3, s3_client_error("NoSuchKey"), NotFound, 404, "no code package 'packages/ab.zip'"
    ),
    "s3-head-404": Case(
        s3,
        s3_client_error("404", "HeadObject"),
        NotFound,
        404,
        "no code package 'packages/ab.zip'",
    ),
    "s3-not-found": Case(
        s3,
        s3_client_error("NotFound", "HeadBucket"),
        NotFound,
        404,
        "no code package 'packages/ab.zip'",
    ),
    "s3-access-denied": Case(
        s3,
        s3_client_error("AccessDenied"),
        StoreUnavailable,
        503,
        "S3 refused 'packages/ab.zip': AccessDenied",
    ),
    "s3-no-such-bucket": Case(
        s3,
        s3_client_error("NoSuchBucket"),
        StoreUnavailable,
        503,
        "S3 refused 'packages/ab.zip': NoSuchBucket",
    ),
    "s3-no-code": Case(
        s3, s3_client_error(None), StoreUnavailable, 503, "S3 refused 'packages/ab.zip': "
    ),
    "s3-endpoint": Case(
        s3,
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3:9000/b"),
        StoreUnavailable,
        503,
        S3_DOWN + 'Could not connect to the endpoint URL: "http://s3:9000/b"',
    ),
    "s3-connect-timeout": Case(
        s3,
        botocore.exceptions.ConnectTimeoutError(endpoint_url="http://s3:9000/b"),
        StoreUnavailable,
        503,
        S3_DOWN,
    ),
    "s3-read-timeout": Case(
        s3,
        botocore.exceptions.ReadTimeoutError(endpoint_url="http://s3:9000/b"),
        StoreUnavailable,
        503,
        S3_DOWN,
    ),
    "s3-connection-closed": Case(
        s3,
        botocore.exceptions.ConnectionClosedError(endpoint_url="http://s3:9000/b"),
        StoreUnavailable,
        503,
        S3_DOWN,
    ),
    "s3-http-client": Case(
        s3,
        botocore.exceptions.HTTPClientError(error=RuntimeError("payload broke")),
        StoreUnavailable,
        503,
        S3_DOWN,
    ),
    "s3-proxy": Case(
        s3,
        botocore.exceptions.ProxyConnectionError(proxy_url="http://proxy:3128"),
        StoreUnavailable,
        503,
        S3_DOWN,
    ),
    "s3-no-credentials": Case(
        s3,
        botocore.exceptions.NoCredentialsError(),
        StoreUnavailable,
        503,
        S3_DOWN + "Unable to locate credentials",
    ),
    "s3-oserror": Case(s3, ConnectionResetError(104, "reset"), StoreUnavailable, 503, S3_DOWN),
    # -- Redis (redis-py) --------------------------------------------------------------
    "redis-connection": Case(
        pool,
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379."),
        StoreUnavailable,
        503,
        REDIS_DOWN,
    ),
    "redis-timeout": Case(
        pool,
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        StoreUnavailable,
        503,
        REDIS_DOWN,
    ),
    "redis-loading": Case(
        pool,
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        StoreUnavailable,
        503,
        REDIS_DOWN,
    ),
    "redis-read-only": Case(
        pool,
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        StoreUnavailable,
        503,
        REDIS_DOWN,
    ),
    "redis-no-master": Case(
        pool,
        MasterNotFoundError("No master found for 'hotpool'"),
        StoreUnavailable,
        503,
        REDIS_DOWN,
    ),
    "redis-auth": Case(
        pool,
        redis.exceptions.AuthenticationError("invalid password"),
        StoreUnavailable,
        503,
        REDIS_DOWN,
    ),
    "redis-oserror": Case(
        pool, ConnectionResetError(104, "reset"), StoreUnavailable, 503, REDIS_DOWN
    ),
    "redis-what": Case(
        lambda: redis_errors("the rate limiter"),
        redis.exceptions.ConnectionError("refused"),
        StoreUnavailable,
        503,
        "the rate limiter (Redis) is unreachable; try again shortly",
    ),
    # -- the metadata database (SQLAlchemy) --------------------------------------------
    "db-operational": Case(
        db_errors,
        db_error(sqlalchemy.exc.OperationalError, Exception("unable to open file")),
        StoreUnavailable,
        503,
        DB_DOWN + "unable to open file",
    ),
    "db-operational-mysql": Case(
        db_errors,
        db_error(
            sqlalchemy.exc.OperationalError,
            Exception(2003, "Can't connect to MySQL server on 'db' ([Errno 111] refused)"),
        ),
        StoreUnavailable,
        503,
        DB_DOWN + "Can't connect to MySQL server on 'db' ([Errno 111] refused) (error 2003)",
    ),
    "db-interface": Case(
        db_errors,
        db_error(sqlalchemy.exc.InterfaceError, Exception("connection closed")),
        StoreUnavailable,
        503,
        DB_DOWN + "connection closed",
    ),
    "db-programming": Case(
        db_errors,
        db_error(
            sqlalchemy.exc.ProgrammingError, Exception(1146, "Table 'x.functions' doesn't exist")
        ),
        StoreUnavailable,
        503,
        DB_DOWN + "Table 'x.functions' doesn't exist (error 1146)",
    ),
    "db-disconnection": Case(
        db_errors,
        sqlalchemy.exc.DisconnectionError("connection invalidated"),
        StoreUnavailable,
        503,
        DB_DOWN + "connection invalidated",
    ),
    "db-pool-timeout": Case(
        db_errors,
        sqlalchemy.exc.TimeoutError(
            "QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00",
            code="3o7r",
        ),
        StoreUnavailable,
        503,
        DB_DOWN + "QueuePool limit of size 5 overflow 10 reached, connection timed out, "
        "timeout 30.00",
    ),
    "db-oserror": Case(
        db_errors,
        ConnectionRefusedError(111, "Connect call failed"),
        StoreUnavailable,
        503,
        DB_DOWN + "Connect call failed (error 111)",
    ),
    "db-what": Case(
        lambda: db_errors("the database at HOTPOOL_DATABASE_URL=sqlite:// is unreachable"),
        db_error(sqlalchemy.exc.OperationalError, Exception("gone")),
        StoreUnavailable,
        503,
        "the database at HOTPOOL_DATABASE_URL=sqlite:// is unreachable: gone",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_library_error_becomes_a_hotpool_error_chained_to_it(case: Case):
    with pytest.raises(HotpoolError) as raised, case.boundary():
        raise case.raised

    error = raised.value
    assert type(error) is case.expected
    assert error.status == case.status
    assert error.__cause__ is case.raised
    if case.message.endswith(": "):
        assert error.message.startswith(case.message) and len(error.message) > len(case.message)
    else:
        assert error.message == case.message
    assert "\n" not in error.message


BOUNDARIES = {"docker": docker, "s3": s3, "redis": pool, "db": db_errors}
# exceptions each boundary does not know: bugs and facts it must not hide as an outage
UNKNOWN: dict[str, list[BaseException]] = {
    "docker": [KeyError("HostPort"), ValueError("bad config")],
    "s3": [
        botocore.exceptions.ParamValidationError(report="Invalid bucket name"),
        KeyError("Body"),
    ],
    "redis": [
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key"),
        redis.exceptions.NoScriptError("NOSCRIPT No matching script"),
        ValueError("not a number"),
    ],
    "db": [
        # a constraint said no: a fact about the data, which the store handles (race retry)
        db_error(sqlalchemy.exc.IntegrityError, Exception(1062, "Duplicate entry 'echo'")),
        sqlalchemy.exc.InvalidRequestError("a bug in the query"),
        ValueError("bad row"),
    ],
}
TOTAL = [
    pytest.param(BOUNDARIES[name], exc, id=f"{name}-{type(exc).__name__}")
    for name, excs in UNKNOWN.items()
    for exc in excs
]


@pytest.mark.parametrize(("boundary", "raised"), TOTAL)
def test_an_exception_the_boundary_does_not_know_passes_unchanged(boundary, raised):
    with pytest.raises(type(raised)) as caught, boundary():
        raise raised

    assert caught.value is raised
    assert caught.value.__cause__ is None


@pytest.mark.parametrize("boundary", BOUNDARIES.values(), ids=BOUNDARIES.keys())
@pytest.mark.parametrize("raised", [asyncio.CancelledError(), KeyboardInterrupt()])
def test_cancellation_passes_every_boundary(boundary, raised):
    with pytest.raises(type(raised)) as caught, boundary():
        raise raised

    assert caught.value is raised


@pytest.mark.parametrize("boundary", BOUNDARIES.values(), ids=BOUNDARIES.keys())
def test_a_block_that_succeeds_is_untouched(boundary):
    done = []
    with boundary():
        done.append(1)
    assert done == [1]


@pytest.mark.parametrize("status", [404, 409])
def test_docker_statuses_meaning_done_already_are_ignored(status):
    after = []
    with docker_errors("could not remove container", ignore=(404, 409)):
        raise aiodocker.DockerError(status, "No such container: c1")
    after.append("went on")

    assert after == ["went on"]


def test_docker_ignore_does_not_hide_other_statuses():
    with pytest.raises(ContainerFailed, match=r"\[500\]"):
        with docker_errors("could not remove container", ignore=(404, 409)):
            raise aiodocker.DockerError(500, "removal failed")


async def test_docker_daemon_that_is_not_there_is_no_capacity(tmp_path):
    """A real aiodocker call to a socket nobody listens on (aiodocker's status 900)."""
    async with aiodocker.Docker(url=f"unix://{tmp_path}/docker.sock") as client:
        with pytest.raises(NoCapacity) as raised, docker_errors("could not ask the daemon"):
            await client.version()

    assert raised.value.message.startswith(DAEMON_UNREACHABLE + "Cannot connect to Docker Engine")
    assert isinstance(raised.value.__cause__, aiodocker.DockerError)
    assert raised.value.__cause__.status == 900


async def test_every_store_method_translates_through_db_errors():
    class Store:
        @translate_errors
        async def latest(self, name: str) -> str:
            raise db_error(sqlalchemy.exc.OperationalError, Exception(f"{name}: gone"))

    with pytest.raises(StoreUnavailable, match=f"^{DB_DOWN}echo: gone$") as raised:
        await Store().latest("echo")

    assert isinstance(raised.value.__cause__, sqlalchemy.exc.OperationalError)
    assert Store.latest.__name__ == "latest"


# -- the Docker backend's network set-up goes through docker_errors --------------------------


def _network(network_id: str, created: str, *, name: str = FUNCTION_NETWORK, icc: str = "false"):
    return {"Id": network_id, "Name": name, "Created": created, "Options": {ICC_OPTION: icc}}


class _Networks:
    """aiodocker's ``docker.networks`` with a scripted daemon behind it."""

    def __init__(self, *listed: dict, list_error=None, create_error=None) -> None:
        self.listed = list(listed)
        self.list_error = list_error
        self.create_error = create_error
        self.created: list[dict] = []

    async def list(self, *, filters: dict) -> list[dict]:
        assert filters == {"name": [FUNCTION_NETWORK]}
        if self.list_error is not None:
            raise self.list_error
        # the daemon's name filter also matches parts of names
        return [*self.listed, _network("other", "2020-01-01T00:00:00Z", name="x-hotpool-functions")]

    async def create(self, config: dict) -> None:
        if self.create_error is not None:
            if self.create_error.status == 409:  # another Manager made it first
                self.listed.append(_network("theirs", "2026-01-01T00:00:00Z"))
            raise self.create_error
        self.created.append(config)
        self.listed.append(_network(f"new{len(self.created)}", "2026-01-01T00:00:00Z"))


class _Docker:
    def __init__(self, networks: _Networks) -> None:
        self.networks = networks
        self.deleted: list[str] = []

    @contextlib.asynccontextmanager
    async def _query(self, path: str, method: str):
        assert method == "DELETE"
        self.deleted.append(path)
        yield SimpleNamespace(status=204)


def _function_network(networks: _Networks) -> tuple[FunctionNetwork, _Docker]:
    docker = _Docker(networks)
    return FunctionNetwork(lambda: docker, FUNCTION_NETWORK), docker  # type: ignore[arg-type]


async def test_missing_network_is_created_once_without_inter_container_traffic():
    networks = _Networks()
    network, _ = _function_network(networks)
    # pre-warming and the first cold start ask at the same moment
    ids = await asyncio.gather(*(network.id() for _ in range(5)))

    (config,) = networks.created
    assert config["Name"] == FUNCTION_NETWORK and config["Options"] == {ICC_OPTION: "false"}
    assert set(ids) == {"new1"}  # the ID, never the name, which may be ambiguous


async def test_network_created_by_another_manager_meanwhile_is_used():
    networks = _Networks(create_error=aiodocker.DockerError(409, "exists"))
    network, _ = _function_network(networks)

    assert await network.id() == "theirs"
    assert networks.created == []


async def test_duplicate_networks_keep_the_oldest_and_remove_the_others():
    networks = _Networks(
        _network("b", "2026-11-30T09:08:04.3Z"),  # nanoseconds with trailing zeros trimmed
        _network("a", "2026-11-30T09:08:04.12Z"),
        _network("c", "2026-11-30T10:08:04+01:00"),
    )
    network, docker = _function_network(networks)

    assert await network.id() == "c"
    assert docker.deleted == ["networks/a", "networks/b"]
    assert networks.created == []


async def test_network_letting_containers_talk_is_refused():
    network, _ = _function_network(_Networks(_network("n", "2026-01-01T00:00:00Z", icc="true")))
    with pytest.raises(ContainerFailed, match="lets containers talk to each other"):
        await network.id()
    assert network._id is None


@pytest.mark.parametrize(
    ("networks", "expected", "message"),
    [
        pytest.param(
            _Networks(list_error=aiodocker.DockerError(500, "daemon error")),
            ContainerFailed,
            f"could not list the {FUNCTION_NETWORK} networks: [500] daemon error",
            id="list-refused",
        ),
        pytest.param(
            _Networks(create_error=aiodocker.DockerError(403, "forbidden")),
            ContainerFailed,
            f"could not create the {FUNCTION_NETWORK} network: [403] forbidden",
            id="create-refused",
        ),
        pytest.param(
            _Networks(list_error=aiodocker.DockerError(900, DOCKER_DOWN)),
            NoCapacity,
            DAEMON_UNREACHABLE + DOCKER_DOWN,
            id="daemon-away",
        ),
    ],
)
async def test_network_failures_are_translated(networks, expected, message):
    network, _ = _function_network(networks)
    with pytest.raises(expected) as raised:
        await network.id()

    assert raised.value.message == message
    assert isinstance(raised.value.__cause__, aiodocker.DockerError)
    assert network._id is None
