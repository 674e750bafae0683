"""SageMaker's router of multi-model endpoints, which moto leaves out.

moto's InvokeEndpoint runs no container and answers a canned body whatever TargetModel says.
`MultiModelSageMaker` replaces that handler inside the moto server the tests run with what the
service does for a `Mode: MultiModel` model: it reads the endpoint's model from moto, and for
TargetModel NAME.tar.gz, unless the container already holds it (a cache hit), downloads the archive
from the model's ModelDataUrl prefix in moto's S3, unpacks it into a folder of its own under the
container's models root, and asks the container to load it (`POST /models`); a 507 makes it unload
the least recently used model and try again. Then it POSTs the request to
`/models/NAME/invoke` and answers with the container's answer, or, for the container's error,
SageMaker's ModelError (424, OriginalStatusCode) as the service does.

moto also decodes every request body as UTF-8 before its handler runs (an image is not UTF-8):
the router's handler is given the raw bytes instead.
"""

from __future__ import annotations

import io
import json
import tarfile
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from tests.support.aws import DIRECT, Moto

TARGET_MODEL = "x-amzn-sagemaker-target-model"


@dataclass
class MultiModelSageMaker:
    emulator: Moto
    models_root: Path
    container_url: str | None = None
    loaded: OrderedDict[str, str] = field(default_factory=OrderedDict)  # name -> folder, LRU first
    hits: int = 0
    misses: int = 0
    evictions: int = 0

    def install(self, monkeypatch) -> MultiModelSageMaker:
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        double = self
        setup_class = SageMakerRuntimeResponse.setup_class

        def raw_setup_class(response, request, full_url, headers, use_raw_body=False):
            # moto decodes every body as UTF-8 first, which an image body is not
            return setup_class(response, request, full_url, headers, use_raw_body=True)

        def invoke_endpoint(response):
            headers = {k.lower(): v for k, v in response.headers.items()}
            body = response.raw_body
            body = body if isinstance(body, bytes) else body.encode()
            return double.route(response.path.split("/")[2], headers, body)

        monkeypatch.setattr(SageMakerRuntimeResponse, "setup_class", raw_setup_class)
        monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)
        return self

    def route(self, endpoint: str, headers: dict[str, str], body: bytes):
        sm = self.emulator.client("sagemaker")
        try:
            live = sm.describe_endpoint(EndpointName=endpoint)
            config = sm.describe_endpoint_config(EndpointConfigName=live["EndpointConfigName"])
            model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
        except ClientError:
            return _validation(f"Endpoint {endpoint} not found.")
        container = model["PrimaryContainer"]
        target = headers.get(TARGET_MODEL)
        if container.get("Mode") != "MultiModel":
            return _validation("TargetModel is for multi-model endpoints.")
        if not target:
            return _validation("a multi-model endpoint needs TargetModel.")
        if target not in self.loaded:
            refused = self._load(container["ModelDataUrl"], target)
            if refused:
                return refused
        else:
            self.hits += 1
        self.loaded.move_to_end(target)
        forwarded = {"Content-Type": headers.get("content-type", "application/octet-stream")}
        for name in ("accept", "x-amzn-sagemaker-custom-attributes"):
            if name in headers:
                forwarded[name] = headers[name]
        status, kind, data = self._post(f"/models/{target}/invoke", body, forwarded)
        if status != 200:
            return _model_error(status, data)
        return 200, {"Content-Type": kind}, data

    def _load(self, prefix: str, target: str):
        """Download, unpack and load `target`; None when loaded, else the error response."""
        self.misses += 1
        bucket, _, key = prefix[len("s3://") :].partition("/")
        try:
            archive = self.emulator.client("s3").get_object(Bucket=bucket, Key=key + target)
        except ClientError:
            return _validation(f"Could not find model data at {prefix}{target}.")
        folder = self.models_root / uuid.uuid4().hex
        folder.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(archive["Body"].read()), mode="r:gz") as unpacked:
            unpacked.extractall(folder, filter="data")
        request = json.dumps({"model_name": target, "url": str(folder)}).encode()
        while True:
            status, _, data = self._post("/models", request, {"Content-Type": "application/json"})
            if status == 507 and self.loaded:  # memory short: unload the least recently used
                evicted, _ = self.loaded.popitem(last=False)
                self._post(f"/models/{evicted}", None, {}, method="DELETE")
                self.evictions += 1
                continue
            if status in (200, 409):
                self.loaded[target] = str(folder)
                return None
            return _model_error(status, data)

    def _post(self, path: str, body: bytes | None, headers: dict[str, str], method: str = "POST"):
        assert self.container_url, "start the container first"
        request = urllib.request.Request(
            f"{self.container_url}{path}", data=body, headers=headers, method=method
        )
        try:
            with DIRECT.open(request, timeout=120) as answer:
                return answer.status, answer.headers.get("Content-Type", ""), answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _validation(message: str):
    # moto takes a handler's status from its headers' "status", not from the tuple
    headers = {"x-amzn-ErrorType": "ValidationError", "status": "400"}
    return 400, headers, json.dumps({"message": message})


def _model_error(status: int, data: bytes):
    original = data.decode("utf-8", "replace")
    message = f'Received client error ({status}) from primary with message "{original}".'
    body = {"message": message, "OriginalStatusCode": status, "OriginalMessage": original}
    return 424, {"x-amzn-ErrorType": "ModelError", "status": "424"}, json.dumps(body)
