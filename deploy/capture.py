"""Data capture: `up|update --capture s3://BUCKET/PREFIX` and `capture --last N`.

SageMaker writes the requests and responses it samples as JSON Lines under
`DESTINATION/ENDPOINT/VARIANT/yyyy/mm/dd/hh/*.jsonl`, one record per line:

  {"captureData": {"endpointInput": {"observedContentType", "mode": "INPUT", "data", "encoding"},
                   "endpointOutput": {... "mode": "OUTPUT" ...}},
   "eventMetadata": {"eventId", "inferenceTime"}, "eventVersion": "0"}

Content types listed in CaptureContentTypeHeader.JsonContentTypes are stored as JSON text
(encoding "JSON"), every other one base64 (encoding "BASE64"): our answers are JSON, the images
are JPEG/PNG bytes. `capture` reads the newest records, saves each image and prints its detections.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from deploy import config
from deploy.artifacts import parse_s3_uri
from deploy.aws import buckets, paging
from deploy.context import Context
from deploy.errors import UserError

JSON_TYPES = ["application/json"]


def data_capture_config(destination: str, percent: int) -> dict:
    bucket, prefix = parse_s3_uri(destination)
    if not bucket or not 1 <= percent <= 100:
        raise UserError(f"--capture-percent {percent} must be between 1 and 100")
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": percent,
        "DestinationS3Uri": f"s3://{bucket}/{prefix.strip('/')}".rstrip("/"),
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": list(JSON_TYPES)},
    }


def from_options(
    capture: str | None, percent: int | None, current: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The DataCaptureConfig to deploy: a new one, the current one changed, or the current one."""
    if capture is None and percent is None:
        return current
    if capture is None:
        if not current:
            raise UserError("--capture-percent needs --capture s3://BUCKET/PREFIX")
        capture = current["DestinationS3Uri"]
    return data_capture_config(capture, 20 if percent is None else percent)


@dataclass
class Record:
    key: str
    event_id: str
    time: str
    input_type: str
    input_bytes: bytes
    output_type: str
    output: dict | str | None


def _decode(part: dict) -> bytes:
    data = part.get("data") or ""
    if (part.get("encoding") or "").upper() == "BASE64":
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UserError(f"a captured record holds invalid base64: {exc}") from exc
    return data.encode("utf-8")


def parse_line(key: str, line: str) -> Record:
    try:
        event = json.loads(line)
        captured = event["captureData"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{key} holds a line that is not a SageMaker capture record") from exc
    meta = event.get("eventMetadata") or {}
    request = captured.get("endpointInput") or {}
    answer = captured.get("endpointOutput") or {}
    body = _decode(answer) if answer else b""
    output: dict | str | None = None
    if body:
        try:
            output = json.loads(body)
        except ValueError:
            output = body.decode("utf-8", "replace")
    return Record(
        key=key,
        event_id=str(meta.get("eventId") or "?"),
        time=str(meta.get("inferenceTime") or "?"),
        input_type=request.get("observedContentType") or "?",
        input_bytes=_decode(request) if request else b"",
        output_type=answer.get("observedContentType") or "?",
        output=output,
    )


def _keys(s3: Any, bucket: str, prefix: str, account: str) -> list[str]:
    found = paging.items(
        s3, "list_objects_v2", "Contents", Bucket=bucket, Prefix=prefix, **buckets.owner(account)
    )
    return [o["Key"] for o in found if o["Key"].endswith(".jsonl")]


def last(ctx: Context, count: int) -> list[Record]:
    """The `count` newest records of the deployed endpoint (the key paths sort by time)."""
    if count < 1:
        raise UserError("--last must be at least 1")
    endpoint = ctx.state.get("endpoint") or {}
    capture = endpoint.get("data_capture")
    if not capture:
        raise UserError(
            "the deployed endpoint does not capture data",
            "deploy with --capture s3://BUCKET/PREFIX",
        )
    bucket, prefix = parse_s3_uri(capture["DestinationS3Uri"])
    variant = endpoint.get("variant", config.VARIANT_NAME)
    folder = "/".join(p for p in (prefix.strip("/"), endpoint["name"], variant) if p) + "/"
    s3 = ctx.aws.client("s3")
    account = ctx.aws.identity()["account"]
    records: list[Record] = []
    with buckets.pinned(bucket, account):
        for key in sorted(_keys(s3, bucket, folder, account), reverse=True):
            answer = s3.get_object(Bucket=bucket, Key=key, **buckets.owner(account))
            lines = [line for line in answer["Body"].read().decode("utf-8").splitlines()]
            records += [parse_line(key, line) for line in reversed(lines) if line.strip()]
            if len(records) >= count:
                break
    return records[:count]
