"""Powertools for AWS Lambda (Python): Logger, Metrics and the event source data classes.

The handlers follow Powertools' documentation; the library is vendored into each package
as `pip install --target` does for Lambda. Powertools reads the Lambda environment and
context (cold start, function name, memory size, request id), so its output checks both.
"""

from __future__ import annotations

import json

import pytest

from tests.lambda_compat import pins
from tests.lambda_compat.events import sam_event
from tests.lambda_compat.harness import deploy, invoke, output, record
from tests.lambda_compat.packages import App, source, zip_package
from tests.lambda_compat.sources import vendored

pytestmark = pytest.mark.integration

# https://docs.powertools.aws.dev/lambda/python/latest/core/logger/ (inject_lambda_context)
LOGGER = source("""
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.utilities.typing import LambdaContext

    logger = Logger()


    @logger.inject_lambda_context
    def lambda_handler(event: dict, context: LambdaContext) -> str:
        logger.info("Collecting payment")

        # You can log entire objects too
        logger.info({"operation": "collect_payment", "charge_id": event["charge_id"]})
        return "hello world"
""")

# https://docs.powertools.aws.dev/lambda/python/latest/core/metrics/ (add_metric)
METRICS = source("""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.utilities.typing import LambdaContext

    metrics = Metrics()


    @metrics.log_metrics  # ensures metrics are flushed upon request completion/failure
    def lambda_handler(event: dict, context: LambdaContext):
        metrics.add_metric(name="SuccessfulBooking", unit=MetricUnit.Count, value=1)
""")

# https://docs.powertools.aws.dev/lambda/python/latest/utilities/data_classes/ (S3)
S3_DATA_CLASS = source("""
    from urllib.parse import unquote_plus

    from aws_lambda_powertools.utilities.data_classes import S3Event, event_source


    @event_source(data_class=S3Event)
    def lambda_handler(event: S3Event, context):
        bucket_name = event.bucket_name

        # Multiple records can be delivered in a single event
        for record in event.records:
            object_key = unquote_plus(record.s3.get_object.key)
            object_etag = record.s3.get_object.etag
            return {"bucket": bucket_name, "object_key": object_key, "object_etag": object_etag}
""")

# https://docs.powertools.aws.dev/lambda/python/latest/utilities/data_classes/ (EventBridge)
EVENTBRIDGE_DATA_CLASS = source("""
    from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source


    @event_source(data_class=EventBridgeEvent)
    def lambda_handler(event: EventBridgeEvent, context):
        return {"detail_type": event.detail_type, "resources": event.resources,
                "source": event.source}
""")


# https://docs.powertools.aws.dev/lambda/python/latest/utilities/batch/ (SQS)
SQS_BATCH = source("""
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

    processor = BatchProcessor(event_type=EventType.SQS)
    logger = Logger()


    def record_handler(record: SQSRecord):
        payload: str = record.json_body  # if json string data, otherwise record.body for str
        logger.info(payload)


    @logger.inject_lambda_context
    def lambda_handler(event, context: LambdaContext):
        return process_partial_response(
            event=event,
            record_handler=record_handler,
            processor=processor,
            context=context,
        )
""")

# https://docs.powertools.aws.dev/lambda/python/latest/utilities/parser/ (built-in models)
S3_PARSER = source("""
    from aws_lambda_powertools.utilities.parser import event_parser
    from aws_lambda_powertools.utilities.parser.models import S3Model
    from aws_lambda_powertools.utilities.typing import LambdaContext


    @event_parser(model=S3Model)
    def lambda_handler(event: S3Model, context: LambdaContext):
        return [
            {"bucket": r.s3.bucket.name, "key": r.s3.object.key, "size": r.s3.object.size}
            for r in event.Records
        ]
""")


def powertools_app(name: str, code: bytes, *extra: str, **settings) -> App:
    package = zip_package({"app.py": code}, [vendored([pins.POWERTOOLS, *extra])])
    return App(name, "app.lambda_handler", package, settings)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def built() -> dict[str, App]:
    env = {"POWERTOOLS_SERVICE_NAME": "payment", "POWERTOOLS_METRICS_NAMESPACE": "Airline"}
    return {
        "logger": powertools_app("pt-logger", LOGGER, env=env, memory_mb=512),
        "metrics": powertools_app("pt-metrics", METRICS, env=env),
        "s3": powertools_app("pt-s3", S3_DATA_CLASS),
        "eventbridge": powertools_app("pt-eventbridge", EVENTBRIDGE_DATA_CLASS),
        "batch": powertools_app("pt-batch", SQS_BATCH, env=env),
        "parser": powertools_app("pt-parser", S3_PARSER, pins.PYDANTIC),
    }


async def test_logger_writes_json_lines_with_the_lambda_context(hotpool_stack, built):
    stack = await hotpool_stack()
    await deploy(stack, built["logger"])
    requests = []
    for charge in ("ch_1", "ch_2"):
        resp, body = await invoke(stack, "pt-logger", {"charge_id": charge})
        assert resp.status == 200 and body == "hello world", body
        requests.append(resp.headers["X-Hotpool-Request-Id"])
    for n, request_id in enumerate(requests):
        lines = json_lines(output(await record(stack, "pt-logger", request_id)))
        assert [line["message"] for line in lines] == [
            "Collecting payment",
            {"operation": "collect_payment", "charge_id": f"ch_{n + 1}"},
        ], lines
        for line in lines:
            assert line["level"] == "INFO" and line["service"] == "payment"
            assert line["function_request_id"] == request_id
            assert line["function_name"] == "pt-logger"
            assert str(line["function_memory_size"]) == "512"
            assert line["cold_start"] is (n == 0)


async def test_metrics_flush_an_embedded_metric_format_document(hotpool_stack, built):
    stack = await hotpool_stack()
    await deploy(stack, built["metrics"])
    resp, body = await invoke(stack, "pt-metrics", {})
    assert resp.status == 200, body
    documents = json_lines(
        output(await record(stack, "pt-metrics", resp.headers["X-Hotpool-Request-Id"]))
    )
    emf = next(d for d in documents if "_aws" in d)
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "Airline"
    assert directive["Metrics"] == [{"Name": "SuccessfulBooking", "Unit": "Count"}]
    assert emf["SuccessfulBooking"] == [1.0] and emf["service"] == "payment"


async def test_s3_event_data_class_reads_sams_put_event(hotpool_stack, built):
    stack = await hotpool_stack()
    await deploy(stack, built["s3"])
    event = await sam_event("s3", "put", bucket="photos", key="2026/cat picture.jpg")
    resp, body = await invoke(stack, "pt-s3", event)
    assert resp.status == 200, body
    assert body["bucket"] == "photos"
    assert body["object_key"] == "2026/cat picture.jpg"  # SAM url-encodes the key in the event
    assert body["object_etag"]


async def test_eventbridge_data_class_reads_a_scheduled_event(hotpool_stack, built):
    stack = await hotpool_stack()
    await deploy(stack, built["eventbridge"])
    resp, body = await invoke(
        stack, "pt-eventbridge", await sam_event("cloudwatch", "scheduled-event")
    )
    assert resp.status == 200, body
    assert body == {
        "detail_type": "Scheduled Event",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/ExampleRule"],
        "source": "aws.events",
    }


async def test_sqs_batch_reports_the_records_that_failed(hotpool_stack, built):
    stack = await hotpool_stack()
    await deploy(stack, built["batch"])
    event = await sam_event("sqs", "receive-message")
    event["Records"][0]["body"] = '{"seat": "12A"}'  # SAM's template cannot take quotes
    bad = json.loads(json.dumps(event["Records"][0]))
    bad["messageId"], bad["body"] = "not-json", "{oops"
    event["Records"].append(bad)
    resp, body = await invoke(stack, "pt-batch", event)
    assert resp.status == 200, body
    assert body == {"batchItemFailures": [{"itemIdentifier": "not-json"}]}
    lines = json_lines(
        output(await record(stack, "pt-batch", resp.headers["X-Hotpool-Request-Id"]))
    )
    assert {"seat": "12A"} in [line["message"] for line in lines]


async def test_parser_validates_sams_s3_event_with_pydantic(hotpool_stack, built):
    stack = await hotpool_stack()
    await deploy(stack, built["parser"])
    resp, body = await invoke(
        stack, "pt-parser", await sam_event("s3", "put", bucket="in", key="x.csv")
    )
    assert resp.status == 200, body
    assert body == [{"bucket": "in", "key": "x.csv", "size": 1024}]
    # an event that is not an S3 event fails validation, as the parser's caller wants
    resp, body = await invoke(stack, "pt-parser", {"Records": [{"nope": 1}]})
    assert resp.status >= 400
    assert resp.headers["X-Hotpool-Function-Error"] in ("ValidationError", "InvalidModelTypeError")
