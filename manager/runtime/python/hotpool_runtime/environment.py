"""The process environment a Lambda function finds: its reserved variables, set at /init.

Lambda sets these for every function and refuses them in a function's own environment;
hotpool's deploy refuses them too, and this module sets them after the function's env so
they win even where that check was bypassed. ``TZ`` is Lambda's too, but a function may set it.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from .config import FunctionConfig

LOG_GROUP_TEMPLATE = "/hotpool/functions/{name}"


def log_stream_name(config: FunctionConfig) -> str:
    """A log stream name shaped like Lambda's: ``YYYY/MM/DD/[version]<32 hex>``."""
    today = time.strftime("%Y/%m/%d", time.gmtime())
    return f"{today}/[{config.function_version}]{os.urandom(16).hex()}"


def lambda_variables(
    config: FunctionConfig, *, code_dir: str, runtime_dir: str, log_stream: str
) -> dict[str, str]:
    """The reserved variables of ``config``'s function, as Lambda names them."""
    variables = {
        "AWS_REGION": config.region,
        "AWS_DEFAULT_REGION": config.region,
        "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": str(config.function_version),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": LOG_GROUP_TEMPLATE.format(name=config.function_name),
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        # Libraries read this to learn they run on Lambda and which runtime: boto3 and
        # botocore put it in their user agent, Powertools and the X-Ray SDK switch on it, and
        # Mangum-era frameworks detect Lambda by its "AWS_Lambda_" prefix.
        "AWS_EXECUTION_ENV": "AWS_Lambda_python{}.{}".format(*sys.version_info[:2]),
        "LAMBDA_TASK_ROOT": code_dir,
        "LAMBDA_RUNTIME_DIR": runtime_dir,
    }
    if config.log_format == "json":
        variables["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
    # Lambda sets the level beside the JSON format, INFO unless told: AWS's runtime clients
    # read it (awslambdaric leaves the root logger at WARNING without it)
    if config.log_level or config.log_format == "json":
        variables["AWS_LAMBDA_LOG_LEVEL"] = config.log_level or "INFO"
    return variables


def apply(config: FunctionConfig, variables: dict[str, str]) -> None:
    """Set the function's own env, then the reserved ``variables`` over it, then ``TZ``."""
    os.environ.update(config.env)
    os.environ.update(variables)
    if "TZ" not in config.env:
        os.environ["TZ"] = ":UTC"
    time.tzset()  # time.localtime() follows TZ only once told to


def custom_runtime(
    config: FunctionConfig, *, code_dir: str, runtime_dir: str, opt_dir: str, api_address: str
) -> dict[str, str]:
    """The whole environment a custom runtime's bootstrap starts in (``relay``)."""
    variables = lambda_variables(
        config, code_dir=code_dir, runtime_dir=runtime_dir, log_stream=log_stream_name(config)
    )
    del variables["AWS_EXECUTION_ENV"]  # Lambda leaves it unset for OS-only runtimes
    env = {**os.environ, **config.env, **variables}
    env.setdefault("TZ", ":UTC")
    env["AWS_LAMBDA_RUNTIME_API"] = api_address
    env["_HANDLER"] = config.handler
    # Lambda's: /opt/bin on PATH, the task's and the layers' lib folders for the loader
    opt = opt_dir or "/opt"
    env["PATH"] = f"{env.get('PATH', '/usr/local/bin:/usr/bin:/bin')}:{opt}/bin"
    libs = [code_dir, f"{code_dir}/lib", f"{opt}/lib"]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libs)
    return env
