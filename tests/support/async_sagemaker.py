"""SageMaker's part of asynchronous inference, which moto leaves out.

moto's server answers InvokeEndpointAsync, but it runs no container and its canned answer ignores
the endpoint config (a fresh bucket, `response.json`, written at once). `AsyncSageMaker` replaces
that one handler inside the moto server the tests run (ThreadedMotoServer, in this process) with
what the service does: it reads the endpoint config moto recorded, returns the output and failure
locations under its S3OutputPath / S3FailurePath (plus the request's S3OutputPathExtension), and
then, in the background, reads the input object from moto's S3, POSTs it to the container (a real
`python -m serve`) with the request's Content-Type, Accept and CustomAttributes, and writes the
answer to the output location, or the container's error to the failure location.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from tests.support.aws import DIRECT, Moto


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


@dataclass
class AsyncSageMaker:
    emulator: Moto
    container_url: str | None = None  # None: requests stay queued (no instance runs)
    requests: list[dict] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def install(self, monkeypatch) -> AsyncSageMaker:
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        double = self

        def invoke_endpoint_async(response):
            headers = {k.lower(): v for k, v in response.headers.items()}
            return double.accept(response.path.split("/")[2], headers)

        monkeypatch.setattr(
            SageMakerRuntimeResponse, "invoke_endpoint_async", invoke_endpoint_async
        )
        return self

    def accept(self, endpoint: str, headers: dict[str, str]):
        sm = self.emulator.client("sagemaker")
        try:
            live = sm.describe_endpoint(EndpointName=endpoint)
            config = sm.describe_endpoint_config(EndpointConfigName=live["EndpointConfigName"])
        except ClientError:
            return _validation(f"Endpoint {endpoint} not found.")
        output_config = (config.get("AsyncInferenceConfig") or {}).get("OutputConfig")
        if not output_config:
            return _validation(f"Endpoint {endpoint} is not an asynchronous endpoint.")
        inference_id = str(uuid.uuid4())
        extension = headers.get("x-amzn-sagemaker-s3outputpathextension")
        suffix = f"/{extension}" if extension else ""
        output = f"{output_config['S3OutputPath'].rstrip('/')}{suffix}/{inference_id}.out"
        failure_root = output_config.get("S3FailurePath", output_config["S3OutputPath"])
        failure = f"{failure_root.rstrip('/')}{suffix}/{inference_id}-error.out"
        request = {
            "endpoint": endpoint,
            "input": headers.get("x-amzn-sagemaker-inputlocation"),
            "content_type": headers.get("x-amzn-sagemaker-content-type"),
            "accept": headers.get("x-amzn-sagemaker-accept"),
            "attributes": headers.get("x-amzn-sagemaker-custom-attributes"),
            "invocation_timeout": int(
                headers.get("x-amzn-sagemaker-invocationtimeoutseconds", 900)
            ),
            "output": output,
            "failure": failure,
        }
        self.requests.append(request)
        if self.container_url:
            thread = threading.Thread(target=self._process, args=(request,), daemon=True)
            thread.start()
            self._threads.append(thread)
        headers_out = {
            "X-Amzn-SageMaker-OutputLocation": output,
            "X-Amzn-SageMaker-FailureLocation": failure,
        }
        return 202, headers_out, json.dumps({"InferenceId": inference_id})

    def _process(self, request: dict) -> None:
        s3 = self.emulator.client("s3")
        bucket, key = _split(request["input"])
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        headers = {"Content-Type": request["content_type"], "Accept": request["accept"]}
        if request["attributes"]:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = request["attributes"]
        post = urllib.request.Request(
            f"{self.container_url}/invocations", data=body, headers=headers, method="POST"
        )
        try:
            with DIRECT.open(post, timeout=request["invocation_timeout"]) as answer:
                location, data = request["output"], answer.read()
                kind = answer.headers.get("Content-Type", "application/octet-stream")
                request["status"] = answer.status
        except urllib.error.HTTPError as exc:
            location, data, kind = request["failure"], exc.read(), "application/json"
            request["status"] = exc.code
        out_bucket, out_key = _split(location)
        s3.put_object(Bucket=out_bucket, Key=out_key, Body=data, ContentType=kind)

    def join(self, timeout: float = 60) -> None:
        for thread in self._threads:
            thread.join(timeout)


def _validation(message: str):
    return 400, {"x-amzn-ErrorType": "ValidationError"}, json.dumps({"message": message})
