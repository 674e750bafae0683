"""`invoke`: an image file's raw bytes to the endpoint (sagemaker-runtime) or to any server URL.

Thresholds travel as CustomAttributes (`conf=0.3,iou=0.5,max_det=100`), which SageMaker hands
to the container as the X-Amzn-SageMaker-Custom-Attributes header; with --url the header is set
directly, so a local container answers exactly as the endpoint would.
"""

from __future__ import annotations

import ipaddress
import json
import mimetypes
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from deploy import multi_models, payload
from deploy.aws.sagemaker import logs_hint
from deploy.backoff import Refusal, with_backoff
from deploy.context import Context
from deploy.errors import AwsError, DeployError, UserError, one_line

ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    seconds: float
    target: str

    def json(self) -> dict:
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise DeployError(
                f"{self.target} answered {self.content_type or 'no content type'}, not JSON"
            ) from exc
        if not isinstance(data, dict):
            raise DeployError(f"{self.target} answered JSON that is not an object")
        return data


def custom_attributes(
    conf: float | None = None, iou: float | None = None, max_det: int | None = None
) -> str | None:
    parts = []
    for key, value, low, high in (("conf", conf, 0, 1), ("iou", iou, 0, 1)):
        if value is not None:
            if not low <= value <= high:
                raise UserError(f"--{key} must be between {low} and {high}")
            parts.append(f"{key}={value:g}")
    if max_det is not None:
        if max_det < 1:
            raise UserError("--max-det must be at least 1")
        parts.append(f"max_det={max_det}")
    return ",".join(parts) or None


def read_image(path: Path) -> tuple[bytes, str]:
    if not path.is_file():
        raise UserError(f"no image file at {path}")
    data = path.read_bytes()
    if not data:
        raise UserError(f"{path} is empty")
    kind = IMAGE_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    return data, kind or "application/octet-stream"


def invocations_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"--url {url!r} is not an http(s) URL", "e.g. http://127.0.0.1:8080")
    if parts.path in ("", "/"):
        return url.rstrip("/") + "/invocations"
    return url


def post(url: str, body: bytes, content_type: str, accept: str, attributes: str | None) -> Reply:
    headers = {"Content-Type": content_type, "Accept": accept}
    if attributes:
        headers[ATTRIBUTES_HEADER] = attributes
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    # A container on this machine is never behind the HTTP(S)_PROXY that may be set for AWS.
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(urlsplit(url).hostname) else []
    opener = urllib.request.build_opener(*handlers)
    start = time.perf_counter()
    try:
        with opener.open(request, timeout=70) as answer:
            data = answer.read()
            return Reply(
                answer.status,
                answer.headers.get("Content-Type", ""),
                data,
                time.perf_counter() - start,
                url,
            )
    except urllib.error.HTTPError as exc:
        detail = _error_detail(exc.read())
        error = UserError if 400 <= exc.code < 500 else DeployError
        failure = error(f"{url} answered HTTP {exc.code}: {detail}")
        if exc.code == 503:  # overloaded (or still loading): worth another try
            raise Refusal(failure, _seconds(exc.headers.get("Retry-After"))) from exc
        raise failure from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeployError(
            f"could not reach {url}: {reason}",
            "is the server running (python -m serve, or the container on that port)?",
        ) from exc


def _seconds(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not used by our server)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _is_loopback(host: str | None) -> bool:
    if host in (None, "", "localhost"):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error_detail(body: bytes) -> str:
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            parts = [data.get("title"), data.get("description"), data.get("error")]
            text = ": ".join(str(p) for p in parts if p)
            if text:
                return one_line(text)
    except ValueError:
        pass
    return one_line(body[:300].decode("utf-8", "replace")) or "no body"


def call_endpoint(
    runtime: Any,
    endpoint: str,
    region: str,
    body: bytes,
    content_type: str,
    accept: str,
    attributes: str | None,
    target_model: str | None = None,
) -> Reply:
    kwargs = {
        "EndpointName": endpoint,
        "Body": body,
        "ContentType": content_type,
        "Accept": accept,
    }
    if attributes:
        kwargs["CustomAttributes"] = attributes
    if target_model:  # a multi-model endpoint: NAME.tar.gz under its prefix
        kwargs["TargetModel"] = target_model
    start = time.perf_counter()
    try:
        answer = runtime.invoke_endpoint(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ModelError":
            message = one_line(exc.response["Error"].get("Message", ""))
            failure = AwsError(
                f"the container behind {endpoint} returned an error: {message}",
                logs_hint(endpoint, region),
            )
            if _refused(exc.response, message):
                raise Refusal(failure) from exc
            raise failure from exc
        raise
    data = answer["Body"].read()
    return Reply(
        200,
        answer.get("ContentType", ""),
        data,
        time.perf_counter() - start,
        f"endpoint {endpoint}",
    )


def _refused(response: dict, message: str) -> bool:
    """A ModelError carrying the container's 503 (its refusal, serve/admission.py): the status
    is OriginalStatusCode, and SageMaker's message names it too."""
    return response.get("OriginalStatusCode") == 503 or "(503)" in message


def invoke(
    ctx: Context,
    image: Path,
    url: str | None = None,
    endpoint: str | None = None,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    save: Path | None = None,
    model: str | None = None,
) -> tuple[dict, Reply, Reply | None]:
    """JSON detections (and, with `save`, the annotated JPEG written there).

    An image over the payload limit is sent shrunk (deploy/payload.py), and the boxes come back
    in the original's pixels."""
    attributes = custom_attributes(conf, iou, max_det)
    recorded = ctx.state.get("endpoint") or {}
    limit = payload.limit_for(None if url else recorded)
    body, content_type = read_image(image)
    fitted = payload.fit(image, body, content_type, limit, log=ctx.log)
    body, content_type = fitted.body, fitted.content_type
    if url:
        target = invocations_url(url)
        if model:  # a local multi-model server (SAGEMAKER_MULTI_MODEL=true)
            base = target.removesuffix("/invocations")
            target = f"{base}/models/{multi_models.check_name(model)}/invoke"

        def send(accept: str) -> Reply:
            return with_backoff(
                lambda: post(target, body, content_type, accept, attributes), ctx.log
            )
    else:
        name = endpoint or (ctx.state.get("endpoint") or {}).get("name")
        if not name:
            raise UserError(
                "no endpoint to invoke", "run `up`, or pass --endpoint NAME or --url URL"
            )
        runtime = ctx.aws.client("sagemaker-runtime")
        region = ctx.aws.region
        target_model = multi_models.target_model(model) if model else None

        def send(accept: str) -> Reply:
            return with_backoff(
                lambda: call_endpoint(
                    runtime, name, region, body, content_type, accept, attributes, target_model
                ),
                ctx.log,
            )

    reply = send("application/json")
    data = fitted.map_back(reply.json())
    picture = None
    if save:
        picture = send("image/jpeg")
        if not picture.content_type.startswith("image/"):
            raise DeployError(
                f"{picture.target} answered {picture.content_type or 'no content type'} "
                "to Accept: image/jpeg"
            )
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_bytes(picture.body)
    return data, reply, picture
