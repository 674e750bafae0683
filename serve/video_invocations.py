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
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import falcon

from serve.admission import Admission, client_gone, request_turn
from serve.answer import detection_list
from serve.config import REALTIME_VIDEO_SECONDS, Settings
from serve.detector import Detections, Detector
from serve.errors import (
    BodyTooLarge,
    EmptyBody,
    NotAcceptable,
    UnreadableVideo,
    VideoTooLong,
)
from serve.options import KEYS, Options, from_custom_attributes, resolve
from serve.scratch import Scratch
from serve.video import (
    KEYS as VIDEO_KEYS,
)
from serve.video import (
    SNIFF_BYTES,
    ClipInfo,
    Frame,
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
ALL_KEYS = (*KEYS, *VIDEO_KEYS)  # a clip's options: each frame's detection, then which frames


@dataclass
class Tally:
    """What the frames computed so far add up to; each frame's record is written to the answer
    file as it comes (JSON: comma-separated inside the "frames" array; JSON Lines: a line each),
    so that the answer, like the frames, never has to be held in memory."""

    out: IO[str] | None = None
    jsonlines: bool = False
    frames: int = 0
    detections: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def add_frame(self, record: dict[str, Any]) -> None:
        if self.out is not None:
            text = json.dumps(record)
            if self.jsonlines:
                self.out.write(text + "\n")
            else:
                self.out.write(("," if self.frames else "") + text)
        self.frames += 1

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
        # Threads made once, at start: a clip at a time per admission permit, each with a reader
        # and as many inferences in flight as there are inference slots. Threads that came and
        # went with each clip would make the server's thread count move with its traffic.
        permits = admission.limits.permits
        self._readers = _started_pool(permits, "video-reader")
        self._inferences = _started_pool(permits * self._depth, "video-infer")

    @property
    def _depth(self) -> int:
        """Frames of a clip inferred at once: the detector's inference slots."""
        return max(1, self._detector.inference_slots)

    @property
    def realtime(self) -> bool:
        return self._seconds <= REALTIME_VIDEO_SECONDS

    def on_post(self, req: falcon.Request, resp: falcon.Response, head: bytes) -> None:
        """A clip as the body (its first bytes already read), options in the header."""
        if req.content_length is not None and req.content_length > self._max_bytes:
            raise BodyTooLarge(req.content_length, self._max_bytes)
        overrides = from_custom_attributes(req.get_header(CUSTOM_ATTRIBUTES), ALL_KEYS)

        def write(clip: Path) -> None:
            _save_body(head, req.bounded_stream, clip, self._max_bytes)

        self._serve(req, resp, head, overrides, write)

    def on_json(
        self, req: falcon.Request, resp: falcon.Response, data: bytes, body_options: dict[str, Any]
    ) -> None:
        """`{"video": "<base64>", ...options}`: the header's options, then the body's, as for a
        photo in JSON (serve/app.py)."""
        if not data:
            raise EmptyBody()
        overrides: dict[str, Any] = from_custom_attributes(
            req.get_header(CUSTOM_ATTRIBUTES), ALL_KEYS
        )
        overrides.update(body_options)
        self._serve(req, resp, data[:SNIFF_BYTES], overrides, lambda clip: clip.write_bytes(data))

    def _serve(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        head: bytes,
        overrides: dict[str, Any],
        write: Callable[[Path], object],
    ) -> None:
        answer_type = req.client_prefers(ANSWER_TYPES)
        if answer_type is None:
            raise NotAcceptable(req.accept[:80], ANSWER_TYPES)
        info = self._detector.model_info
        detection = {key: value for key, value in overrides.items() if key in KEYS}
        options = resolve(self._defaults, detection, info.names, info.nc)
        selection = resolve_video({k: v for k, v in overrides.items() if k in VIDEO_KEYS})
        suffix = _SUFFIX.get(container(head) or "", ".bin")
        with self._scratch.file(suffix) as clip:
            write(clip)
            frames = [0]
            with request_turn(self._admission, req, units=lambda: frames[0]):
                self._compute(req, resp, clip, head, options, selection, answer_type, frames)

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
        reader = FrameReader(
            capture, clip_info, selection, self._max_pixels, self._max_frames, self._readers
        )
        try:
            selected = clip_info.selected(selection)
            self._check_frames(selected)
            if self.seconds_per_frame is not None:
                self._check_time(selected, self.seconds_per_frame)
            if answer_type == MP4:
                with self._scratch.file(".mp4") as out:
                    label = self._detector.model_info.label
                    writer = AnnotatedClip(out, _output_fps(clip_info, selection), label)
                    tally = Tally()
                    try:
                        self._run(req, reader, options, selected, done, tally, writer)
                    finally:
                        writer.close()
                    self._answer_clip(resp, out, tally, reader)
            else:
                with self._scratch.file(".json") as path:
                    with open(path, "w", encoding="utf-8") as out:
                        if answer_type == JSON:
                            out.write('{"frames": [')
                        tally = Tally(out, answer_type == JSONLINES)
                        self._run(req, reader, options, selected, done, tally, None)
                        summary = self._summary(tally, reader, clip_info, started)
                        if answer_type == JSON:
                            out.write("], " + json.dumps(summary)[1:])
                        else:
                            out.write(json.dumps({"summary": summary}) + "\n")
                    _send_file(resp, path, answer_type)
                _attributes(resp, tally, reader)
        finally:
            reader.close()

    def _run(
        self,
        req: falcon.Request,
        reader: FrameReader,
        options: Options,
        selected: int | None,
        done: list[int],
        tally: Tally,
        writer: AnnotatedClip | None,
    ) -> None:
        """Infer the frames, as many at once as the detector has inference slots (a photo
        request beside another uses them the same way), and record them in order."""
        depth, pool = self._depth, self._inferences
        run = _Run(self, req, selected, done, tally, writer)
        pending: deque[tuple[Frame, Future[Detections]]] = deque()
        try:
            waited = time.perf_counter()
            for frame in reader:
                tally.add_timings({"decode": (time.perf_counter() - waited) * 1000})
                size = (frame.pixels.shape[1], frame.pixels.shape[0])
                detect = self._detector.detect
                pending.append((frame, pool.submit(detect, frame.pixels, options, 1, size)))
                if len(pending) >= depth and not run.record(*pending.popleft(), reader):
                    break
                waited = time.perf_counter()
            else:
                while pending and run.record(*pending.popleft(), reader):
                    pass
        finally:
            for _, future in pending:  # stopped early: those in flight end before the clip
                if not future.cancel():
                    future.exception()
        if done[0]:
            per_frame = (time.perf_counter() - run.started) / done[0]
            old = self.seconds_per_frame
            self.seconds_per_frame = (
                per_frame if old is None else old + SMOOTHING * (per_frame - old)
            )
        req.context.detections = tally.detections
        if not tally.frames:
            self._nothing_computed(reader)

    def _nothing_computed(self, reader: FrameReader) -> None:
        """No frame computed: a 400 when the clip has none or none decodes; else the options
        selected none (an empty answer)."""
        ending = reader.ending
        if ending.last_time is None:  # not one frame came out of the decoder
            why = ending.incomplete or "no frame could be decoded"
            raise UnreadableVideo(f"the clip has no frames: {why}")
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

    def _summary(
        self, tally: Tally, reader: FrameReader, clip_info: ClipInfo, started: float
    ) -> dict[str, Any]:
        """What follows the frames: the clip, the model, the timings, and why it is incomplete."""
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
        return summary

    def _answer_clip(
        self, resp: falcon.Response, path: Path, tally: Tally, reader: FrameReader
    ) -> None:
        _send_file(resp, path, MP4)
        _attributes(resp, tally, reader)


def _send_file(resp: falcon.Response, path: Path, content_type: str) -> None:
    """The answer is the file: opened before the block that made it removes its name, so its
    data stays until waitress has sent it and closed it."""
    stream = open(path, "rb")  # noqa: SIM115 (closed by the WSGI server after sending)
    resp.set_stream(stream, path.stat().st_size)
    resp.content_type = content_type


class _Run:
    """One clip's frames as their inferences end: recorded in order, and the checks between them
    (the measured speed against the budget, the time budget, a client that hung up)."""

    def __init__(
        self,
        owner: VideoInvocations,
        req: falcon.Request,
        selected: int | None,
        done: list[int],
        tally: Tally,
        writer: AnnotatedClip | None,
    ):
        self._owner, self._selected, self._done = owner, selected, done
        self._tally, self._writer = tally, writer
        self._label = owner._detector.model_info.label
        self._gone = client_gone(req)
        self.started = time.perf_counter()

    def record(self, frame: Frame, future: Future[Detections], reader: FrameReader) -> bool:
        """Record one frame's detections; False when the clip must stop here."""
        owner, tally, done = self._owner, self._tally, self._done
        result = future.result()
        tally.add_timings(result.timings_ms)
        tally.detections += len(result)
        if self._writer is not None:
            self._writer.add(frame.pixels, result)
        tally.add_frame(
            {
                "frame": frame.index,
                "time": round(frame.time, 3),
                "detections": detection_list(result, self._label),
            }
        )
        done[0] += 1
        elapsed = time.perf_counter() - self.started
        if done[0] == PROBE_FRAMES and owner.seconds_per_frame is None:
            owner._check_time(self._selected, elapsed / done[0])
        if elapsed > owner._seconds:
            reader.ending.incomplete = (
                f"stopped at the time budget ({owner._seconds:g} s, SERVE_VIDEO_SECONDS) after "
                f"{done[0]} frames; " + _remedy(owner.realtime)
            )
            return False
        if self._gone():
            reader.ending.incomplete = "the client disconnected"
            return False
        return True


def _started_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """A pool whose `workers` threads all exist now (ThreadPoolExecutor starts them lazily)."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
    barrier = threading.Barrier(workers + 1)
    for _ in range(workers):  # each task holds its thread until all are started
        pool.submit(barrier.wait)
    barrier.wait()
    return pool


def _attributes(resp: falcon.Response, tally: Tally, reader: FrameReader) -> None:
    text = f"frames={tally.frames},detections={tally.detections}"
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
