"""The BUILT batch and pre-traffic hook functions under the local Lambda runtime, talking to AWS stand-ins over
HTTP as they would to AWS: moto's server for S3 and SQS, the runtime's own Invoke API for Lambda, and a
recorder for CodeDeploy (moto has no PutLifecycleEventHookExecutionStatus)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from amaas.artifact.model import Model
from amaas.batch import result_key
from amaas_cli.lambda_local import InvokeApi, LocalLambda
from amaas_export.data import synthetic
from tests.helpers import encode_image

BUCKET = "amaas-batch-local"
IMAGES = {"incoming/job7/star.png": "star", "incoming/job7/a b/ring.png": "ring", "incoming/job7/heart.png": "heart"}


@pytest.fixture
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def client(service: str, url: str) -> Any:
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def test_batch_function_classifies_s3_uploads_announced_through_sqs(
    sam_build: Path, lambda_runtime_cache: Path, artifact: Path, moto_url: str
) -> None:
    # GIVEN a bucket whose uploads under incoming/ notify a queue, and three images uploaded
    s3, sqs = client("s3", moto_url), client("sqs", moto_url)
    queue = sqs.create_queue(QueueName="batch")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    for key, label in IMAGES.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=encode_image(synthetic.sample(label, variant=1)))
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    messages = [m for m in messages if "s3:TestEvent" not in m["Body"]]
    event = {
        "Records": [
            {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
             "attributes": m["Attributes"], "eventSource": "aws:sqs", "eventSourceARN": arn}
            for m in messages
        ]
    }  # fmt: skip

    # WHEN the batch function gets them as Lambda's SQS event source would deliver them, its SDK aimed at moto
    with LocalLambda(
        sam_build, "BatchFunction", env={"AWS_ENDPOINT_URL": moto_url}, runtime_cache=lambda_runtime_cache
    ) as function:
        result = function.invoke(event)

    # THEN no message is sent back, and each image has its result, with the label the API gives it
    assert result.check() == {"batchItemFailures": []}, result.logs
    assert len(messages) == len(IMAGES) and result.report.memory_size_mb == 1769
    classifier = Model(artifact)
    for key in IMAGES:
        stored = json.loads(s3.get_object(Bucket=BUCKET, Key=result_key(key))["Body"].read())
        (expected,) = classifier.infer([s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()], k=1).results
        assert stored["status"] == "ok" and stored["predictions"][0]["label"] == expected[0].label, key


class CodeDeploy:
    """CodeDeploy's PutLifecycleEventHookExecutionStatus, recorded."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                recorder.calls.append({"target": self.headers["X-Amz-Target"], **body})
                answer = json.dumps({"lifecycleEventHookExecutionId": body["lifecycleEventHookExecutionId"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def codedeploy() -> Iterator[CodeDeploy]:
    recorder = CodeDeploy()
    yield recorder
    recorder.server.shutdown()
    recorder.server.server_close()


@pytest.mark.parametrize(
    ("target_env", "status"), [({}, "Succeeded"), ({"AMAAS_MODEL_DIR": "/opt/no-model-here"}, "Failed")]
)
def test_pre_traffic_hook_invokes_the_new_version_and_tells_codedeploy(
    sam_build: Path, lambda_runtime_cache: Path, codedeploy: CodeDeploy, target_env: dict[str, str], status: str
) -> None:
    # GIVEN the API function as the new version (healthy, or with its model layer broken) behind the Invoke API
    with (
        LocalLambda(sam_build, "ApiFunction", env=target_env, runtime_cache=lambda_runtime_cache) as api,
        InvokeApi([api]) as invoke_api,
        LocalLambda(
            sam_build,
            "PreTrafficHookFunction",
            env={"AWS_ENDPOINT_URL_LAMBDA": invoke_api.url, "AWS_ENDPOINT_URL_CODEDEPLOY": codedeploy.url},
            runtime_cache=lambda_runtime_cache,
        ) as hook,
    ):
        # WHEN CodeDeploy runs the hook
        result = hook.invoke({"DeploymentId": "d-42", "LifecycleEventHookExecutionId": "hook-7"})
        served = api.process.invocations if api.process else 0

    # THEN the hook checked the target through Lambda's Invoke API and reported the outcome to CodeDeploy
    assert result.check() == {"status": status}, result.logs
    assert served > 1, "health and the golden samples went to the API function"
    assert codedeploy.calls == [
        {
            "target": "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus",
            "deploymentId": "d-42",
            "lifecycleEventHookExecutionId": "hook-7",
            "status": status,
        }
    ]
