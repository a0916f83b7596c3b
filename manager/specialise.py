"""A cold start as Main asks for it, and the bootstrap's ``/init`` that turns a generic
container into one of a function version (specialisation, as OpenWhisk and Fission call it)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from hotpool.manager.backend import Container, ContainerSpec, ImageRun
from hotpool.shared.errors import ContainerFailed, FunctionError, InvalidRequest
from hotpool.shared.models import (
    CONTAINER_SECRET_HEADER,
    MAX_LAYERS,
    FunctionConfig,
    validate_qualified,
)
from hotpool.shared.redis_conn import redis_errors
from hotpool.shared.settings import Settings
from hotpool.shared.ws_token import ConnectionTokens, access_key_id

# any of these in a function's own env means it brings its own AWS credentials, which the
# ones hotpool derives for the @connections API must not shadow (env credentials come first
# in the SDKs' chain, before a profile, a web identity or a container's credentials)
USER_AWS_CREDENTIALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


@dataclass(frozen=True)
class CreateRequest:
    """A cold start as Main asks for it."""

    function: str
    version: int
    code_key: str
    config: FunctionConfig
    # the packages of config.layers, in order (FunctionVersion.layer_keys)
    layer_keys: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> CreateRequest:
        if not isinstance(data, dict):
            raise InvalidRequest("body must be a JSON object")
        try:
            return cls(
                function=validate_qualified(str(data["function"])),
                version=int(data["version"]),
                code_key=str(data["code_key"]),
                config=FunctionConfig.from_dict(data),
                layer_keys=_layer_keys(data.get("layer_keys", [])),
            )
        except KeyError as exc:
            raise InvalidRequest(f"missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"malformed field: {exc}") from None

    def packages(self) -> tuple[str, ...]:
        """Every package a container of this version needs: its code, then its layers."""
        return (self.code_key, *self.layer_keys)

    def spec(
        self, manager_id: str, *, region: str = "us-east-1", platform_env: dict | None = None
    ) -> ContainerSpec:
        """The container a fresh cold start for this request begins with."""
        labels = {
            "hotpool.manager": manager_id,
            "hotpool.function": self.function,
            "hotpool.version": str(self.version),
        }
        image = self.image_run(region, platform_env or {}) if self.config.image else None
        return ContainerSpec(self.config.runtime, self.config.memory_mb, labels, image)

    def image_run(self, region: str, platform_env: dict[str, str]) -> ImageRun:
        """How an image function's own container runs: its pinned image with Lambda's
        environment (set at its start: its runtime is not the relay's child)."""
        config = self.config
        if not config.image_id:
            raise InvalidRequest(f"{self.function} v{self.version} has no pinned image ID")
        env = {
            **config.env,
            **platform_env,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_LAMBDA_FUNCTION_NAME": self.function,
            "AWS_LAMBDA_FUNCTION_VERSION": str(self.version),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        }
        if config.log_format == "json":
            env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        if config.log_level or config.log_format == "json":  # INFO beside JSON, as Lambda
            env["AWS_LAMBDA_LOG_LEVEL"] = config.log_level or "INFO"
        return ImageRun(
            config.image_id,
            config.image_entrypoint,
            config.image_command,
            config.image_workdir,
            env,
        )


@dataclass(frozen=True)
class Loaded:
    """What the bootstrap's ``/init`` answered: its time, and what the module printed and
    logged while it was imported (each stream at most ``log_limit_bytes``)."""

    init_ms: float
    stdout: str = ""
    stderr: str = ""


async def connections_env(
    request: CreateRequest, settings: Settings, tokens: ConnectionTokens
) -> dict[str, str]:
    """What hotpool adds to a WebSocket function's env: the @connections endpoint, the token
    that reaches its own connections, and that token as AWS credentials for boto3's
    ``apigatewaymanagementapi`` client unless the function brings its own. Other functions
    get nothing."""
    if request.config.websocket == "off":
        return {}
    with redis_errors("the connections signing key"):
        token = await tokens.token(request.function)
    env = {
        "HOTPOOL_CONNECTIONS_URL": settings.effective_connections_url,
        "HOTPOOL_CONNECTIONS_TOKEN": token,
    }
    if not any(name in request.config.env for name in USER_AWS_CREDENTIALS):
        env["AWS_ACCESS_KEY_ID"] = access_key_id(token)
        env["AWS_SECRET_ACCESS_KEY"] = token
    return env


def _layer_keys(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(k, str) for k in raw):
        raise InvalidRequest("layer_keys must be a list of code package keys")
    if len(raw) > MAX_LAYERS:
        raise InvalidRequest(f"at most {MAX_LAYERS} layers, got {len(raw)}")
    return tuple(raw)


async def load_code(
    http: aiohttp.ClientSession,
    container: Container,
    request: CreateRequest,
    code: bytes,
    *,
    layers: tuple[bytes, ...] = (),
    platform_env: dict[str, str] | None = None,
    log_limit_bytes: int,
    timeout_s: float,
    region: str = "us-east-1",
) -> Loaded:
    """Load the function's code into a generic container through its bootstrap's ``/init``.

    ``platform_env`` is set over the function's own env (names it may not set itself).
    Raises FunctionError when the code fails to load (the function's fault) and
    ContainerFailed when the container does."""
    body = {
        "function_name": request.function,
        "function_version": request.version,
        "handler": request.config.handler,
        "memory_mb": request.config.memory_mb,
        "timeout_s": request.config.timeout_s,
        "env": {**request.config.env, **(platform_env or {})},
        "log_limit_bytes": log_limit_bytes,
        "region": region,
        "log_format": request.config.log_format,
        "log_level": request.config.log_level,
        "code_zip_b64": base64.b64encode(code).decode(),
        # unpacked in order at /opt (later ones overwrite earlier files), as Lambda does
        "layers_zip_b64": [base64.b64encode(layer).decode() for layer in layers],
    }
    url = f"http://{container.address}/init"
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    headers = {CONTAINER_SECRET_HEADER: container.secret}
    try:
        async with http.post(
            url, data=orjson.dumps(body), headers=headers, timeout=timeout
        ) as resp:
            payload = await resp.json(loads=orjson.loads, content_type=None)
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ContainerFailed(f"container {container.id} failed during init: {exc}") from exc
    if status == 200 and isinstance(payload, dict):
        return Loaded(
            float(payload.get("init_ms", 0.0)),
            _bounded(payload.get("stdout"), log_limit_bytes),
            _bounded(payload.get("stderr"), log_limit_bytes),
        )
    error = payload.get("error", {}) if isinstance(payload, dict) else {}
    if status == 422:
        raise FunctionError(
            f"loading the function failed: {error.get('message', '')}",
            error_type=str(error.get("type", "InitError")),
            traceback=str(error.get("traceback", "")),
            phase="init",
            # what the module printed before it failed: for the record, never the response
            stdout=_bounded(payload.get("stdout"), log_limit_bytes),
            stderr=_bounded(payload.get("stderr"), log_limit_bytes),
        )
    raise ContainerFailed(f"container {container.id} refused init ({status}): {error}")


def _bounded(text: Any, limit_bytes: int) -> str:
    """The bootstrap's captured output, held to its limit again: this is the node's side."""
    if not isinstance(text, str):
        return ""
    if len(text) <= limit_bytes // 4 or len(text.encode()) <= limit_bytes:
        return text
    return text.encode()[:limit_bytes].decode(errors="ignore") + "\n[truncated]"
