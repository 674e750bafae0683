"""POST /invocations with a video body: per-frame detections for a clip.

The body is written once to a file of the server's private directory (OpenCV reads video from a
path), removed when the request ends whatever happens. Frames are decoded one at a time by
serve/video.py's reader thread while this thread infers; the answer is JSON (every frame),
JSON Lines (one line per frame, then a summary line) or the annotated clip (serve/video_render).

Limits, before any frame is computed where they can be: the body (MAX_VIDEO_BYTES), the pixels of
a frame (MAX_IMAGE_PIXELS), the frames selected (SERVE_VIDEO_MAX_FRAMES), and the time budget
(SERVE_VIDEO_SECONDS): at the measured per-frame speed, a clip that cannot finish in it is refused
at once with a 413 (on a real-time endpoint, naming `invoke --async`). A clip that turns out
longer, or stops early (cut short, corrupt), is answered with the frames computed so far and
`"incomplete": true` with the reason; one where no frame decodes is a 400.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import falcon

from serve.admission import Admission, Refused
from serve.answer import detection_list
from serve.config import REALTIME_VIDEO_SECONDS, Settings
from serve.detector import Detector
from serve.errors import (
    BodyTooLarge,
    EmptyBody,
    NotAcceptable,
    Overloaded,
    UnreadableVideo,
    VideoTooLong,
)
from serve.options import KEYS, Options, from_custom_attributes, resolve
from serve.scratch import Scratch
from serve.video import (
    KEYS as VIDEO_KEYS,
)
from serve.video import (
    ClipInfo,
    FrameReader,
    VideoOptions,
    container,
    open_clip,
    resolve_video,
)
from serve.video_render import AnnotatedClip

JSON = "application/json"
JSONLINES = "application/jsonlines"
MP4 = "video/mp4"
ANSWER_TYPES = [JSON, JSONLINES, MP4]
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
CHUNK = 1024 * 1024
PROBE_FRAMES = 2  # frames computed to measure the speed when none is known yet
SMOOTHING = 0.3  # weight of the newest clip in the per-frame time's moving average
_SUFFIX = {"MP4": ".mp4", "AVI": ".avi", "Matroska": ".mkv"}


@dataclass
class Tally:
    """What the frames computed so far add up to."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    detections: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def add_timings(self, timings: dict[str, float]) -> None:
        for key, value in timings.items():
            self.timings[key] = self.timings.get(key, 0.0) + value


class VideoInvocations:
    """The video half of POST /invocations (serve/app.Invocations hands clips here)."""

    def __init__(
        self, detector: Detector, settings: Settings, admission: Admission, scratch: Scratch
    ):
        self._detector, self._admission, self._scratch = detector, admission, scratch
        self._max_bytes = settings.max_video_bytes
        self._max_pixels = settings.max_image_pixels
        self._max_frames = settings.video_max_frames
        self._seconds = settings.video_seconds
        self._defaults = Options(conf=settings.conf, iou=settings.iou, max_det=settings.max_det)
        self.seconds_per_frame: float | None = None  # measured on clips, a moving average

    @property
    def realtime(self) -> bool:
        return self._seconds <= REALTIME_VIDEO_SECONDS

    def on_post(self, req: falcon.Request, resp: falcon.Response, head: bytes) -> None:
        if req.content_length is not None and req.content_length > self._max_bytes:
            raise BodyTooLarge(req.content_length, self._max_bytes)
        answer_type = req.client_prefers(ANSWER_TYPES)
        if answer_type is None:
            raise NotAcceptable(req.accept[:80], ANSWER_TYPES)
        header = req.get_header(CUSTOM_ATTRIBUTES)
        info = self._detector.model_info
        options = resolve(self._defaults, from_custom_attributes(header, KEYS), info.names, info.nc)
        selection = resolve_video(from_custom_attributes(header, VIDEO_KEYS))
        suffix = _SUFFIX.get(container(head) or "", ".bin")
        with self._scratch.file(suffix) as clip:
            _save_body(head, req.bounded_stream, clip, self._max_bytes)
            gone = req.env.get("waitress.client_disconnected") or _connected
            frames = [0]
            try:
                with self._admission.turn(gone, units=lambda: frames[0]):
                    req.context.admission = "admitted"
                    self._compute(req, resp, clip, head, options, selection, answer_type, frames)
            except Refused as refused:
                req.context.admission = refused.outcome
                raise Overloaded(refused.why, refused.retry_after) from None

    def _compute(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        clip: Path,
        head: bytes,
        options: Options,
        selection: VideoOptions,
        answer_type: str,
        done: list[int],
    ) -> None:
        started = time.perf_counter()
        capture, clip_info = open_clip(clip, head, self._max_pixels)
        reader = FrameReader(capture, clip_info, selection, self._max_pixels, self._max_frames)
        try:
            selected = clip_info.selected(selection)
            self._check_frames(selected)
            if self.seconds_per_frame is not None:
                self._check_time(selected, self.seconds_per_frame)
            if answer_type == MP4:
                with self._scratch.file(".mp4") as out:
                    label = self._detector.model_info.label
                    writer = AnnotatedClip(out, _output_fps(clip_info, selection), label)
                    try:
                        tally = self._run(req, reader, clip_info, options, selected, done, writer)
                    finally:
                        writer.close()
                    self._answer_clip(resp, out, tally, reader, clip_info)
            else:
                tally = self._run(req, reader, clip_info, options, selected, done, None)
                self._answer_json(resp, answer_type, tally, reader, clip_info, started)
        finally:
            reader.close()

    def _run(
        self,
        req: falcon.Request,
        reader: FrameReader,
        clip_info: ClipInfo,
        options: Options,
        selected: int | None,
        done: list[int],
        writer: AnnotatedClip | None,
    ) -> Tally:
        detector, label = self._detector, self._detector.model_info.label
        gone = req.env.get("waitress.client_disconnected") or _connected
        tally = Tally()
        started = waited = time.perf_counter()
        for frame in reader:
            tally.add_timings({"decode": (time.perf_counter() - waited) * 1000})
            size = (frame.pixels.shape[1], frame.pixels.shape[0])
            result = detector.detect(frame.pixels, options, 1, size)
            tally.add_timings(result.timings_ms)
            tally.detections += len(result)
            if writer is not None:
                writer.add(frame.pixels, result)
            tally.frames.append(
                {
                    "frame": frame.index,
                    "time": round(frame.time, 3),
                    "detections": detection_list(result, label),
                }
            )
            done[0] += 1
            elapsed = time.perf_counter() - started
            if done[0] == PROBE_FRAMES and self.seconds_per_frame is None:
                self._check_time(selected, elapsed / done[0])
            if elapsed > self._seconds:
                reader.ending.incomplete = (
                    f"stopped at the time budget ({self._seconds:g} s, SERVE_VIDEO_SECONDS) after "
                    f"{done[0]} frames; " + _remedy(self.realtime)
                )
                break
            if gone():
                reader.ending.incomplete = "the client disconnected"
                break
            waited = time.perf_counter()
        if done[0]:
            per_frame = (time.perf_counter() - started) / done[0]
            old = self.seconds_per_frame
            self.seconds_per_frame = (
                per_frame if old is None else old + SMOOTHING * (per_frame - old)
            )
        req.context.detections = tally.detections
        if not tally.frames:
            self._nothing_computed(reader, clip_info)
        return tally

    def _nothing_computed(self, reader: FrameReader, clip_info: ClipInfo) -> None:
        """No frame computed: a 400 when the clip has none or none decodes; else the options
        selected none (an empty answer)."""
        ending = reader.ending
        if ending.last_time is None:  # not one frame came out of the decoder
            why = ending.incomplete or "no frame could be decoded"
            raise UnreadableVideo(f"the {clip_info.format} clip has no frames: {why}")
        if ending.incomplete and ending.incomplete.startswith("frame "):
            raise UnreadableVideo(f"no frame could be decoded: {ending.incomplete}")

    def _check_frames(self, selected: int | None) -> None:
        if selected is not None and selected > self._max_frames:
            raise VideoTooLong(
                f"the clip has {selected} frames to compute; the limit is {self._max_frames} "
                "(SERVE_VIDEO_MAX_FRAMES): select fewer with frame_stride, fps, max_frames, "
                "start or end"
            )

    def _check_time(self, selected: int | None, per_frame: float) -> None:
        if selected is None or selected * per_frame <= self._seconds:
            return
        raise VideoTooLong(
            f"the clip's {selected} frames would take about {selected * per_frame:.0f} s at "
            f"{per_frame * 1000:.0f} ms per frame, over this endpoint's {self._seconds:g} s "
            f"budget for a clip; {_remedy(self.realtime)}"
        )

    def _answer_json(
        self,
        resp: falcon.Response,
        answer_type: str,
        tally: Tally,
        reader: FrameReader,
        clip_info: ClipInfo,
        started: float,
    ) -> None:
        video = clip_info.as_json()
        if reader.ending.total is not None and not reader.ending.incomplete:
            video["frames"] = reader.ending.total  # counted, not the container's estimate
        summary: dict[str, Any] = {
            "video": video,
            "model": self._detector.model_info.name,
            "timing_ms": _timings(tally, started),
        }
        if reader.ending.incomplete:
            summary.update(incomplete=True, reason=reader.ending.incomplete)
        _attributes(resp, tally, reader)
        if answer_type == JSONLINES:
            lines = [json.dumps(frame) for frame in tally.frames]
            lines.append(json.dumps({"summary": summary}))
            resp.data = ("\n".join(lines) + "\n").encode()
            resp.content_type = JSONLINES
        else:
            resp.media = {"frames": tally.frames, **summary}

    def _answer_clip(
        self,
        resp: falcon.Response,
        path: Path,
        tally: Tally,
        reader: FrameReader,
        clip_info: ClipInfo,
    ) -> None:
        # Opened before the block removes its name: the data stays until waitress has sent it.
        stream = open(path, "rb")  # noqa: SIM115 (closed by the WSGI server after sending)
        resp.set_stream(stream, path.stat().st_size)
        resp.content_type = MP4
        _attributes(resp, tally, reader)


def _attributes(resp: falcon.Response, tally: Tally, reader: FrameReader) -> None:
    text = f"frames={len(tally.frames)},detections={tally.detections}"
    if reader.ending.incomplete:
        text += ",incomplete=true"
    resp.set_header(CUSTOM_ATTRIBUTES, text)


def _timings(tally: Tally, started: float) -> dict[str, float]:
    timings = {**tally.timings, "total": (time.perf_counter() - started) * 1000}
    return {key: round(value, 2) for key, value in timings.items()}


def _remedy(realtime: bool) -> str:
    if realtime:
        return (
            "send it to an asynchronous endpoint (`python -m deploy invoke --async`), or select "
            "fewer frames with frame_stride, fps, max_frames, start or end"
        )
    return "select fewer frames with frame_stride, fps, max_frames, start or end"


def _output_fps(clip_info: ClipInfo, selection: VideoOptions) -> float:
    """The annotated clip's rate: the frames it keeps, over the same video time."""
    fps = clip_info.fps or 30.0
    rate = fps / selection.frame_stride
    return min(rate, selection.fps) if selection.fps else rate


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _save_body(head: bytes, stream: _Readable, path: Path, limit: int) -> int:
    """The body (its first bytes already read) into `path`, a chunk at a time; its size."""
    size = len(head)
    with open(path, "wb") as file:
        file.write(head)
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limit:  # a body that came without Content-Length
                raise BodyTooLarge(size, limit)
            file.write(chunk)
    if size == 0:
        raise EmptyBody()
    return size


def _connected() -> bool:
    return False
