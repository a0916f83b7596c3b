# ruff: noqa: E501 (the samples keep the docs' own long lines)
"""AWS's documentation samples: short public handler code, kept as the docs publish it.

Each constant is the sample of the page in its comment (AWS documentation code samples are
licensed MIT-0); the tests deploy it unchanged as ``lambda_function.lambda_handler`` (the
name the Lambda console gives a new Python function) or as the page names it.
"""

from __future__ import annotations

from tests.lambda_compat.packages import source

# https://docs.aws.amazon.com/lambda/latest/dg/python-handler.html (Example Python Lambda
# function: takes an order, writes a receipt to the S3 bucket RECEIPT_BUCKET)
ORDER_RECEIPT = source('''
    import json
    import os
    import logging
    import boto3

    # Initialize the S3 client outside of the handler
    s3_client = boto3.client('s3')

    # Initialize the logger
    logger = logging.getLogger()
    logger.setLevel("INFO")

    def upload_receipt_to_s3(bucket_name, key, receipt_content):
        """Helper function to upload receipt to S3"""

        try:
            s3_client.put_object(
                Bucket=bucket_name,
                Key=key,
                Body=receipt_content
            )
        except Exception as e:
            logger.error(f"Failed to upload receipt to S3: {str(e)}")
            raise

    def lambda_handler(event, context):
        """
        Main Lambda handler function
        Parameters:
            event: Dict containing the Lambda function event data
            context: Lambda runtime context
        Returns:
            Dict containing status message
        """
        try:
            # Parse the input event
            order_id = event['Order_id']
            amount = event['Amount']
            item = event['Item']

            # Access environment variables
            bucket_name = os.environ.get('RECEIPT_BUCKET')
            if not bucket_name:
                raise ValueError("Missing required environment variable RECEIPT_BUCKET")

            # Create the receipt content and key destination
            receipt_content = (
                f"OrderID: {order_id}\\n"
                f"Amount: ${amount}\\n"
                f"Item: {item}"
            )
            key = f"receipts/{order_id}.txt"

            # Upload the receipt to S3
            upload_receipt_to_s3(bucket_name, key, receipt_content)

            logger.info(f"Successfully processed order {order_id} and stored receipt in S3 bucket {bucket_name}")

            return {
                "statusCode": 200,
                "message": "Receipt processed successfully"
            }

        except Exception as e:
            logger.error(f"Error processing order: {str(e)}")
            raise
''')

# https://docs.aws.amazon.com/lambda/latest/dg/with-s3-example.html (the s3-get-object
# blueprint: reads the object an S3 event names and returns its content type)
S3_GET_OBJECT = source("""
    import json
    import urllib.parse
    import boto3

    print('Loading function')

    s3 = boto3.client('s3')


    def lambda_handler(event, context):
        #print("Received event: " + json.dumps(event, indent=2))

        # Get the object from the event and show its content type
        bucket = event['Records'][0]['s3']['bucket']['name']
        key = urllib.parse.unquote_plus(event['Records'][0]['s3']['object']['key'], encoding='utf-8')
        try:
            response = s3.get_object(Bucket=bucket, Key=key)
            print("CONTENT TYPE: " + response['ContentType'])
            return response['ContentType']
        except Exception as e:
            print(e)
            print('Error getting object {} from bucket {}. Make sure they exist and your bucket is in the same region as this function.'.format(key, bucket))
            raise e
""")

# https://docs.aws.amazon.com/lambda/latest/dg/python-context.html (Example handler.py)
CONTEXT = source("""
    import time

    def lambda_handler(event, context):
        print("Lambda function ARN:", context.invoked_function_arn)
        print("CloudWatch log stream name:", context.log_stream_name)
        print("CloudWatch log group name:",  context.log_group_name)
        print("Lambda Request ID:", context.aws_request_id)
        print("Lambda function memory limits in MB:", context.memory_limit_in_mb)
        # We have added a 1 second delay so you can see the time remaining in get_remaining_time_in_millis.
        time.sleep(1)
        print("Lambda time remaining in MS:", context.get_remaining_time_in_millis())
""")

# https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html (the logging library)
LOGGING = source("""
    import os
    import logging
    logger = logging.getLogger()
    logger.setLevel("INFO")

    def lambda_handler(event, context):
        logger.info('## ENVIRONMENT VARIABLES')
        logger.info(os.environ['AWS_LAMBDA_LOG_GROUP_NAME'])
        logger.info(os.environ['AWS_LAMBDA_LOG_STREAM_NAME'])
        logger.info('## EVENT')
        logger.info(event)
""")

# https://docs.aws.amazon.com/lambda/latest/dg/python-exceptions.html (an exception the
# handler raises becomes the invocation's error response)
EXCEPTION = source("""
    def lambda_handler(event, context):
        raise Exception('Error!')
""")

# https://docs.aws.amazon.com/lambda/latest/dg/with-sqs-create-package.html (Python)
SQS = source("""
    def lambda_handler(event, context):
        for message in event['Records']:
            process_message(message)
        print("done")

    def process_message(message):
        try:
            print(f"Processed message {message['body']}")
            # TODO: Do interesting work based on the new message
        except Exception as err:
            print("An error occurred")
            raise err
""")

# https://docs.aws.amazon.com/lambda/latest/dg/with-sns-example.html (Python)
SNS = source("""
    def lambda_handler(event, context):
        for record in event['Records']:
            process_message(record)
        print("done")

    def process_message(record):
        try:
            message = record['Sns']['Message']
            print(f"Processed message {message}")
            # TODO; Process your record here

        except Exception as e:
            print("An error occurred")
            raise e
""")

# https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-example.html (Python)
DYNAMODB = source("""
    import json

    def lambda_handler(event, context):
        print(event)
        for record in event['Records']:
            log_dynamodb_record(record)

    def log_dynamodb_record(record):
        print(record['eventID'])
        print(record['eventName'])
        print(f"DynamoDB Record: {json.dumps(record['dynamodb'])}")
""")
