"""The Falcon app: SageMaker's /ping, /invocations and /execution-parameters.

Resources are thin. Faults are typed falcon HTTP errors raised where they are detected and turned
into `{"error": ..., "status": N, "request_id": ...}` by `render_error`, the one place that renders
errors. Anything unexpected becomes a 500 with a request id that is also logged. A middleware gives
every request an id and writes one JSON log line per request.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import falcon
import falcon.media

from serve.admission import Admission, Limits, request_turn
from serve.answer import detection_list
from serve.config import Settings
from serve.decode import decode_for_model, decode_image
from serve.detector import Detections, Detector
from serve.errors import (
    BadJson,
    BodyTooLarge,
    EmptyBody,
    InternalError,
    NotAcceptable,
    NotReady,
    UnsupportedContentType,
)
from serve.options import KEYS, Options, from_custom_attributes, resolve
from serve.render import draw, encode
from serve.scratch import Scratch
from serve.video import KEYS as VIDEO_KEYS
from serve.video import SNIFF_BYTES, VIDEO_TYPES, container
from serve.video_invocations import VideoInvocations

log = logging.getLogger("serve")

JSON = "application/json"
IMAGE_TYPES = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/bmp",
    "application/x-image",
    "application/octet-stream",
)
# Spellings seen in the wild for the same formats.
IMAGE_ALIASES = ("image/jpg", "image/pjpeg", "image/x-ms-bmp", "image/x-png")
ANSWER_TYPES = [JSON, "image/jpeg", "image/png"]
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
SNIFFED = "application/octet-stream"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_URLSAFE = str.maketrans("-_", "+/")


class ImageBytes(falcon.media.BaseHandler):
    """Media handler for image bodies: the bytes as they came (decoding is a timed step)."""

    def deserialize(
        self, stream: Any, content_type: str | None, content_length: int | None
    ) -> bytes:
        return stream.read()

    def serialize(self, media: object, content_type: str | None) -> bytes:
        if not isinstance(media, bytes):  # image answers are set as resp.data, already bytes
            raise TypeError(f"an image body must be bytes, not {type(media).__name__}")
        return media


def loads_json(text: str) -> Any:
    """json.loads whose only failure is ValueError (falcon answers 400 for that): a document
    nested thousands deep exhausts the recursion limit instead."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("the document is nested too deeply") from None


def render_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """The one place where an error becomes a response body: JSON, whatever Accept says."""
    body: dict[str, Any] = {"error": error.description or error.title, "status": error.status_code}
    request_id = getattr(req.context, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    resp.data = json.dumps(body).encode()
    resp.content_type = JSON


def handle_unexpected(
    req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict
) -> None:
    """Catch-all: log the traceback with the request id; the client gets a 500 and that id."""
    request_id = getattr(req.context, "request_id", None) or uuid.uuid4().hex
    req.context.request_id = request_id
    log.error(
        "unexpected error",
        exc_info=exc,
        extra={"fields": {"request_id": request_id, "method": req.method, "path": req.path}},
    )
    raise InternalError(request_id)


class RequestLog:
    """Request id, timing, and one structured log line per request."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header("X-Request-Id")
        req.context.request_id = (
            given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        )
        req.context.started = time.perf_counter()
        req.context.detections = None
        req.context.admission = None

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        resp.set_header("X-Request-Id", req.context.request_id)
        body = resp.render_body()
        status = resp.status_code
        fields = {
            "method": req.method,
            "path": req.path,
            "status": status,
            "bytes": len(body) if body else 0,
            "latency_ms": round((time.perf_counter() - req.context.started) * 1000, 2),
            "detections": req.context.detections,
            "admission": req.context.admission,
            "request_id": req.context.request_id,
        }
        # SageMaker pings every few seconds: healthy pings only at DEBUG.
        level = logging.DEBUG if req.path == "/ping" and status < 400 else logging.INFO
        log.log(level, "request", extra={"fields": fields})


class Ping:
    """200 once the model is loaded and warmed up; runs no inference."""

    def __init__(self, detector: Detector):
        self._detector = detector

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self._detector.ready:
            raise NotReady()
        detector = self._detector
        resp.media = {
            "status": "ok",
            "model": detector.model_info.name,
            "runtime": detector.runtime,
            "precision": detector.precision,
            "float_precision": detector.float_precision,
        }
        info = detector.model_info
        if info.task != "detect":  # a pose model: say so, and what its keypoints are
            resp.media.update(task=info.task, keypoints=list(info.keypoint_names))
        if detector.compiling:  # an INT8 export on OpenVINO, its float view serving for now
            resp.media["compiling"] = detector.compiling

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self._detector.ready:
            raise NotReady()
        resp.content_type = JSON


class ExecutionParameters:
    """What Batch Transform asks before it starts sending records."""

    def __init__(self, settings: Settings):
        self._answer = {
            "MaxConcurrentTransforms": settings.transform_concurrency,
            "BatchStrategy": "SINGLE_RECORD",
            "MaxPayloadInMB": min(100, settings.max_payload_mb),
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._answer


class Invocations:
    def __init__(
        self, detector: Detector, settings: Settings, admission: Admission, scratch: Scratch
    ):
        self._detector = detector
        self._video = VideoInvocations(detector, settings, admission, scratch)
        self._admission = admission
        self._max_body = settings.max_body_bytes
        self._max_pixels = settings.max_image_pixels
        self._exact_decode = settings.exact_decode
        self._defaults = Options(conf=settings.conf, iou=settings.iou, max_det=settings.max_det)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        detector = self._detector
        if not detector.ready:
            raise NotReady()
        media_type = (req.content_type or "application/octet-stream").split(";")[0].strip().lower()
        head = b""  # a clip is told from its first bytes where the type does not say (video.py)
        if media_type in VIDEO_TYPES or media_type == SNIFFED:
            head = req.bounded_stream.read(SNIFF_BYTES)
            if media_type in VIDEO_TYPES or container(head):
                self._video.on_post(req, resp, head)
                return
        if req.content_length is not None and req.content_length > self._max_body:
            raise BodyTooLarge(req.content_length, self._max_body)
        if media_type != JSON and media_type not in IMAGE_TYPES + IMAGE_ALIASES:
            raise UnsupportedContentType(media_type[:80], [*IMAGE_TYPES, *VIDEO_TYPES, JSON])
        if media_type == JSON:
            document = req.get_media()
            if isinstance(document, dict) and "video" in document:
                self._video.on_json(req, resp, *_clip_from_json(document))
                return
        answer_type = req.client_prefers(ANSWER_TYPES)
        if answer_type is None:
            raise NotAcceptable(req.accept[:80], ANSWER_TYPES)
        overrides: dict[str, Any] = from_custom_attributes(req.get_header(CUSTOM_ATTRIBUTES))

        started = time.perf_counter()
        body = head + req.bounded_stream.read() if head else req.get_media()
        if media_type == JSON:
            data, body_options = _image_from_json(body)
            overrides.update(body_options)
        else:
            data = body
        if not data:
            raise EmptyBody()
        if len(data) > self._max_body:  # a body that came without Content-Length
            raise BodyTooLarge(len(data), self._max_body)
        info = detector.model_info
        options = resolve(self._defaults, overrides, info.names, info.nc)
        # Everything above is cheap; decoding, inference and drawing take a turn (serve/admission).
        with request_turn(self._admission, req) as waited:
            self._compute(req, resp, data, options, answer_type, started + waited)

    def _compute(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        data: bytes,
        options: Options,
        answer_type: str,
        started: float,
    ) -> None:
        detector = self._detector
        info = detector.model_info
        img_size = None if self._exact_decode else info.img_size
        decoded = decode_for_model(data, self._max_pixels, img_size)
        decode_ms = (time.perf_counter() - started) * 1000

        original_size = (decoded.width, decoded.height)
        result = detector.detect(decoded.pixels, options, decoded.factor, original_size)
        req.context.detections = len(result)
        resp.set_header(CUSTOM_ATTRIBUTES, f"detections={len(result)}")
        if answer_type == JSON:
            resp.media = _answer(result, original_size, info.name, info.label, decode_ms)
        else:
            # The same detections whatever the answer, drawn on the picture at its own size.
            picture = (
                decoded.pixels if decoded.factor == 1 else decode_image(data, self._max_pixels)
            )
            resp.data = encode(
                draw(
                    picture,
                    result.boxes,
                    result.scores,
                    result.class_ids,
                    info.label,
                    result.keypoints,
                ),
                answer_type,
            )
            resp.content_type = answer_type


def _image_from_json(document: Any) -> tuple[bytes, dict[str, Any]]:
    """`{"image": "<base64>", ...options}` -> (image bytes, options)."""
    if not isinstance(document, dict):
        raise BadJson('expected a JSON object such as {"image": "<base64>"}')
    unknown = sorted(set(document) - {"image", *KEYS})
    if unknown:
        raise BadJson(f"unknown key '{unknown[0][:40]}'; known: image, {', '.join(KEYS)}")
    return _base64(document, "image"), {key: document[key] for key in KEYS if key in document}


def _clip_from_json(document: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """`{"video": "<base64>", ...options}` -> (clip bytes, options): the frame selection's too."""
    known = ("video", *KEYS, *VIDEO_KEYS)
    unknown = sorted(set(document) - set(known))
    if unknown:
        raise BadJson(f"unknown key '{unknown[0][:40]}'; known: {', '.join(known)}")
    return _base64(document, "video"), {key: document[key] for key in known[1:] if key in document}


def _base64(document: dict[str, Any], key: str) -> bytes:
    """The bytes of a base64 (or data URL) string under `key`; BadJson naming it otherwise."""
    text = document.get(key)
    if not isinstance(text, str) or not text:
        raise BadJson(f"'{key}' must be a non-empty base64 string")
    if text.startswith("data:"):  # a data URL: keep what follows the comma
        text = text.partition(",")[2]
    text = "".join(text.split()).translate(_URLSAFE)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadJson(f"'{key}' is not valid base64") from None


def _answer(
    result: Detections, size: tuple[int, int], model: str, label: Any, decode_ms: float
) -> dict[str, Any]:
    detections = detection_list(result, label)
    timings = {"decode": decode_ms, **result.timings_ms}
    return {
        "detections": detections,
        "image": {"width": size[0], "height": size[1]},
        "model": model,
        "timing_ms": {key: round(value, 2) for key, value in timings.items()},
    }


def take_bodies(app: falcon.App) -> None:
    """The bodies an invocation takes: JSON, and the image types as the bytes that came (a clip
    is read from the stream by serve/video_invocations.py, not through a media handler)."""
    handlers: dict[str, falcon.media.BaseHandler] = {
        JSON: falcon.media.JSONHandler(loads=loads_json)
    }
    handlers.update({media_type: ImageBytes() for media_type in IMAGE_TYPES + IMAGE_ALIASES})
    app.req_options.media_handlers = falcon.media.Handlers(handlers)
    app.req_options.default_media_type = "application/octet-stream"


def create_app(
    detector: Detector, settings: Settings, scratch: Scratch | None = None
) -> falcon.App:
    """`scratch`: where clips are written (default: a Scratch in tempfile's directory, which
    serve/__main__ points at the server's private one)."""
    scratch = scratch or Scratch(Path(tempfile.gettempdir()))
    app = falcon.App(middleware=[RequestLog()], cors_enable=False)
    take_bodies(app)
    app.add_route("/ping", Ping(detector))
    limits = Limits.for_server(detector.inference_slots, settings.threads, settings.queue_deadline)
    invocations = Invocations(detector, settings, Admission(limits), scratch)
    app.add_route("/invocations", invocations)
    app.add_route("/execution-parameters", ExecutionParameters(settings))
    app.set_error_serializer(render_error)
    app.add_error_handler(Exception, handle_unexpected)
    return app
