"""Lists a bucket with boto3, an S3 client independent of the test harness's own signer.

Usage: boto3_list.py ENDPOINT_URL ACCESS_KEY SECRET_KEY BUCKET
Prints one JSON object: {"objects": [[key, size], ...]} on success, or
{"error": CODE, "status": HTTP_STATUS} when the server answers with an S3 error.
"""

import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main() -> None:
    endpoint, access_key, secret_key, bucket = sys.argv[1:5]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    objects = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            objects += [[o["Key"], o["Size"]] for o in page.get("Contents", [])]
    except ClientError as e:
        print(json.dumps({"error": e.response["Error"]["Code"], "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}))
        return
    print(json.dumps({"objects": objects}))


if __name__ == "__main__":
    main()
