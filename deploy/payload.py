"""Real-time and serverless `invoke` of an image over the endpoint's payload limit.

SageMaker refuses a real-time request over 6 MiB (serverless: 4 MB) before the container sees it.
A photo over that is decoded here (OpenCV, EXIF orientation applied as the server does), shrunk
with INTER_AREA and re-encoded as JPEG until it fits, never below `MIN_LONG_SIDE` pixels on its
long side: the model letterboxes to its input size (640, or 1280 for the -w6/-e6 models) anyway, so
nothing the model would see is lost. The boxes that come back are mapped to the original's pixels.
Above what any re-encoding can fit, the answer is `invoke --async`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import UserError
from deploy.schema import EndpointRecord

MIB = 1024 * 1024
REALTIME_LIMIT = 6 * MIB
SERVERLESS_LIMIT = 4_000_000
MIN_LONG_SIDE = 1280
QUALITIES = (90, 75)
STEP = 0.75  # each try shrinks the sides by this


@dataclass
class Payload:
    body: bytes
    content_type: str
    original: tuple[int, int] | None = None  # (width, height) of the file, when re-encoded
    sent: tuple[int, int] | None = None

    @property
    def resized(self) -> bool:
        return self.sent is not None

    def map_back(self, data: dict) -> dict:
        """The server's answer in the original's pixels (boxes and image size)."""
        if self.original is None or self.sent is None:  # sent as it was
            return data
        (width, height), (sent_w, sent_h) = self.original, self.sent
        sx, sy = width / sent_w, height / sent_h
        for det in data.get("detections") or []:
            box = det.get("box")
            if isinstance(box, list) and len(box) == 4:
                x1, y1, x2, y2 = (float(v) for v in box)
                det["box"] = [round(v, 2) for v in (x1 * sx, y1 * sy, x2 * sx, y2 * sy)]
        data["image"] = {"width": width, "height": height}
        data["sent_image"] = {"width": sent_w, "height": sent_h, "bytes": len(self.body)}
        return data


def limit_for(endpoint: EndpointRecord | None) -> int:
    return SERVERLESS_LIMIT if (endpoint or {}).get("serverless") else REALTIME_LIMIT


def fit(
    path: Path, data: bytes, content_type: str, limit: int, log: Callable[[str], None] | None = None
) -> Payload:
    """`data` as it is when it fits `limit`, else a smaller JPEG of it (said on `log`)."""
    if len(data) <= limit:
        return Payload(data, content_type)
    import cv2  # only when an image must be shrunk: the real-time path needs no OpenCV
    import numpy as np

    size = f"{path} is {len(data) / MIB:.1f} MiB, over the {limit / MIB:.1f} MiB payload limit"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(
            f"{size}, and it cannot be decoded to re-encode it smaller",
            "send it to an asynchronous endpoint with `invoke --async` (up to 1 GB)",
        )
    height, width = image.shape[:2]
    floor = min(1.0, MIN_LONG_SIDE / max(width, height))
    scale = 1.0
    while True:
        sent_w, sent_h = max(1, round(width * scale)), max(1, round(height * scale))
        smaller = (
            image
            if scale == 1.0
            else cv2.resize(image, (sent_w, sent_h), interpolation=cv2.INTER_AREA)
        )
        for quality in QUALITIES:
            ok, buffer = cv2.imencode(".jpg", smaller, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and buffer.size <= limit:
                if log:
                    how = (
                        f"at its full {width}x{height}"
                        if scale == 1.0
                        else f"at {sent_w}x{sent_h} instead of {width}x{height}"
                    )
                    log(
                        f"{size}: sending it as a JPEG (quality {quality}, "
                        f"{buffer.size / MIB:.1f} MiB) {how}; boxes are mapped back to the "
                        "original's pixels"
                    )
                return Payload(buffer.tobytes(), "image/jpeg", (width, height), (sent_w, sent_h))
        if scale <= floor:
            raise UserError(
                f"{size}, and even a {sent_w}x{sent_h} JPEG of it is larger",
                "send it to an asynchronous endpoint with `invoke --async` (up to 1 GB)",
            )
        scale = max(floor, scale * STEP)
