"""AWS's documentation samples, unchanged, with events from `sam local generate-event`.

They prove the Lambda runtime contract as real handlers rely on it: the root logger's
`[LEVEL]\\t<time>\\t<request id>\\t<message>` lines, the reserved environment variables, the
context object, the error shape, what a module prints at import, and boto3 provided by the
runtime (the S3 samples talk to the session's moto server, named in the function's env).
"""

from __future__ import annotations

import json
import re

import aioboto3
import pytest

from tests.lambda_compat import docs
from tests.lambda_compat.events import sam_event
from tests.lambda_compat.harness import LOG_TIME, deploy, invoke, log_line, output, record
from tests.lambda_compat.packages import App, source, zip_package

pytestmark = pytest.mark.integration


def sample(name: str, code: bytes, **settings) -> App:
    """A docs sample as the console deploys it: lambda_function.lambda_handler."""
    package = zip_package({"lambda_function.py": code})
    return App(name, "lambda_function.lambda_handler", package, settings)


def s3_env(endpoint: str) -> dict[str, str]:
    """Credentials and the endpoint of the moto server: there is no execution role here."""
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


async def test_context_sample_prints_the_invocation_and_function(hotpool_stack):
    stack = await hotpool_stack()
    await deploy(stack, sample("docs-context", docs.CONTEXT, memory_mb=256, timeout_s=10))
    resp, body = await invoke(stack, "docs-context", {})
    assert resp.status == 200, body
    request_id = resp.headers["X-Hotpool-Request-Id"]
    text = output(await record(stack, "docs-context", request_id))
    assert f"Lambda Request ID: {request_id}\n" in text
    assert "Lambda function memory limits in MB: 256\n" in text
    # an ARN's fields; the partition and region are hotpool's own ("aws" would be a lie)
    arn = r"^Lambda function ARN: arn:[\w-]+:lambda:[\w-]+:\d{12}:function:docs-context(:\w+)?$"
    assert re.search(arn, text, re.M), text
    assert re.search(r"^CloudWatch log group name: \S*docs-context$", text, re.M), text
    remaining = re.search(r"^Lambda time remaining in MS: (\d+)$", text, re.M)
    assert remaining is not None and 0 < int(remaining.group(1)) < 9_000


async def test_logging_sample_writes_lambda_log_lines_with_the_request_id(hotpool_stack):
    stack = await hotpool_stack()
    await deploy(stack, sample("docs-logging", docs.LOGGING))
    event = await sam_event("sqs", "receive-message", body="logged")
    resp, body = await invoke(stack, "docs-logging", event)
    assert resp.status == 200, body
    request_id = resp.headers["X-Hotpool-Request-Id"]
    text = output(await record(stack, "docs-logging", request_id))
    pattern = log_line("INFO", request_id, "(.*)", literal=False)
    messages = pattern.findall(text)
    assert len(messages) == 5, text
    assert messages[0] == "## ENVIRONMENT VARIABLES" and messages[3] == "## EVENT"
    assert "docs-logging" in messages[1]  # AWS_LAMBDA_LOG_GROUP_NAME
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[[^]]+\]\w+", messages[2])  # ..._LOG_STREAM_NAME
    assert messages[4] == str(event)


async def test_logging_sample_in_lambdas_json_log_format(hotpool_stack):
    """The function setting log_format=json (Lambda's LogFormat JSON): one object a line."""
    stack = await hotpool_stack()
    await deploy(stack, sample("docs-json-logs", docs.LOGGING, log_format="json"))
    resp, body = await invoke(stack, "docs-json-logs", {"order": 7})
    assert resp.status == 200, body
    request_id = resp.headers["X-Hotpool-Request-Id"]
    text = output(await record(stack, "docs-json-logs", request_id))
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert [line["message"] for line in lines][::3] == ["## ENVIRONMENT VARIABLES", "## EVENT"]
    assert lines[-1]["message"] == str({"order": 7})
    for line in lines:
        assert line["level"] == "INFO" and line["requestId"] == request_id, line
        assert re.fullmatch(LOG_TIME, line["timestamp"]), line


async def test_exception_sample_returns_lambdas_error_shape(hotpool_stack):
    stack = await hotpool_stack()
    await deploy(stack, sample("docs-exception", docs.EXCEPTION))
    resp, body = await invoke(stack, "docs-exception", {})
    assert resp.status >= 400
    assert resp.headers["X-Hotpool-Function-Error"] == "Exception"
    assert body["errorMessage"] == "Error!"
    assert body["errorType"] == "Exception"
    assert body["requestId"] == resp.headers["X-Hotpool-Request-Id"]
    trace = body["stackTrace"]
    assert isinstance(trace, list) and all(isinstance(line, str) for line in trace)
    assert any("raise Exception('Error!')" in line for line in trace), trace


@pytest.mark.parametrize(
    ("name", "code", "event_args", "printed"),
    [
        ("docs-sqs", docs.SQS, ("sqs", "receive-message", {"body": "order 42"}),
         ["Processed message order 42", "done"]),
        ("docs-sns", docs.SNS, ("sns", "notification", {"message": "stock low"}),
         ["Processed message stock low", "done"]),
        ("docs-dynamodb", docs.DYNAMODB, ("dynamodb", "update", {}),
         ["c4ca4238a0b923820dcc509a6f75849b", "INSERT", "MODIFY", "REMOVE"]),
    ],
)  # fmt: skip
async def test_event_source_samples_process_every_record(
    hotpool_stack, name, code, event_args, printed
):
    service, kind, values = event_args
    event = await sam_event(service, kind, **values)
    stack = await hotpool_stack()
    await deploy(stack, sample(name, code))
    resp, body = await invoke(stack, name, event)
    assert resp.status == 200, body
    lines = output(await record(stack, name, resp.headers["X-Hotpool-Request-Id"])).splitlines()
    for line in printed:
        assert line in lines, (line, lines)


async def test_s3_blueprint_reads_the_object_its_event_names(hotpool_stack, s3_endpoint, s3_bucket):
    async with aioboto3.Session().client("s3", endpoint_url=s3_endpoint) as s3:
        await s3.put_object(
            Bucket=s3_bucket, Key="uploads/report 1.csv", Body=b"a,b\n", ContentType="text/csv"
        )
    event = await sam_event("s3", "put", bucket=s3_bucket, key="uploads/report 1.csv")
    stack = await hotpool_stack()
    await deploy(stack, sample("docs-s3", docs.S3_GET_OBJECT, env=s3_env(s3_endpoint)))
    resp, body = await invoke(stack, "docs-s3", event)
    assert resp.status == 200, body
    assert body == "text/csv"
    # what the module printed at import belongs to the cold invocation, before its own output
    text = output(await record(stack, "docs-s3", resp.headers["X-Hotpool-Request-Id"]))
    assert "Loading function\n" in text and "CONTENT TYPE: text/csv\n" in text, text
    assert text.index("Loading function") < text.index("CONTENT TYPE")


async def test_order_receipt_sample_uploads_its_receipt_with_boto3(
    hotpool_stack, s3_endpoint, s3_bucket
):
    env = {**s3_env(s3_endpoint), "RECEIPT_BUCKET": s3_bucket}
    stack = await hotpool_stack()
    await deploy(stack, sample("docs-receipt", docs.ORDER_RECEIPT, env=env))
    order = {"Order_id": "12345", "Amount": 199.99, "Item": "Wireless Headphones"}
    resp, body = await invoke(stack, "docs-receipt", order)
    assert resp.status == 200, body
    assert body == {"statusCode": 200, "message": "Receipt processed successfully"}
    async with aioboto3.Session().client("s3", endpoint_url=s3_endpoint) as s3:
        got = await s3.get_object(Bucket=s3_bucket, Key="receipts/12345.txt")
        receipt = (await got["Body"].read()).decode()
    assert receipt == "OrderID: 12345\nAmount: $199.99\nItem: Wireless Headphones"
    request_id = resp.headers["X-Hotpool-Request-Id"]
    text = output(await record(stack, "docs-receipt", request_id))
    message = f"Successfully processed order 12345 and stored receipt in S3 bucket {s3_bucket}"
    assert log_line("INFO", request_id, message).search(text), text


async def test_boto3_comes_with_the_runtime(hotpool_stack):
    """Lambda's Python runtime provides boto3 and botocore; a package need not carry them."""
    code = source("""
        import boto3
        import botocore

        def lambda_handler(event, context):
            session = boto3.session.Session()
            return {"boto3": boto3.__version__, "botocore": botocore.__version__,
                    "region": session.region_name}
    """)
    stack = await hotpool_stack(function_region="eu-west-1")
    await deploy(stack, sample("boto3-provided", code))
    resp, body = await invoke(stack, "boto3-provided", {})
    assert resp.status == 200, body
    assert body["boto3"] and body["botocore"]
    assert body["region"] == "eu-west-1"  # AWS_REGION / AWS_DEFAULT_REGION of the function
