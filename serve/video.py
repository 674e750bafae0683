"""Video clips -> frames, decoded one at a time by a reader thread ahead of the inference.

OpenCV reads video from a path (its FFmpeg backend), so the clip is a file in the server's
private directory (serve/scratch.py). Only the containers named in SUPPORTED are opened, told by
their first bytes: FFmpeg reads many more (and still images too), each more attack surface.

`FrameReader` decodes the selected frames (frame_stride, fps, start, end, max_frames) in a thread
of the caller's pool, at most QUEUE_FRAMES ahead of the consumer: cv2's grab/retrieve release the
GIL, so the decode of the next frame overlaps the inference of this one, and memory holds a few
frames whatever the clip's length. A clip that stops before its declared duration (cut short, or a
corrupt stretch the decoder cannot pass) ends the frames with `incomplete` set to the reason.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from serve.decode import read_header
from serve.errors import BadOption, ImageTooLarge, UnreadableImage, UnreadableVideo
from serve.options import _show

VIDEO_TYPES = (
    "video/mp4",
    "video/quicktime",
    "video/x-msvideo",
    "video/x-matroska",
    "video/webm",
)
SUPPORTED = "MP4, QuickTime, AVI, Matroska or WebM"
SNIFF_BYTES = 64  # enough for every signature below
KEYS = ("frame_stride", "fps", "max_frames", "start", "end")
QUEUE_FRAMES = 2  # decoded frames waiting for the inference, at most
# A clip whose last frame ends more than this before its declared duration was cut short (a
# variable frame rate moves the last frame by a frame interval or two, not by this much).
MISSING_SECONDS = 0.5

# MP4 and QuickTime start with one of these boxes; AVI is RIFF/AVI; Matroska and WebM, EBML.
_MP4_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"})
_EBML = b"\x1a\x45\xdf\xa3"


# ISO base media files that are still images (HEIC, AVIF): photos, not clips.
_IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif"})


def container(head: bytes) -> str | None:
    """The container the first bytes announce, or None."""
    if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
        return None
    if head[4:8] in _MP4_BOXES:
        return "MP4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:4] == _EBML:
        return "Matroska"
    return None


@dataclass(frozen=True)
class VideoOptions:
    frame_stride: int = 1  # frames 0, N, 2N, ...
    fps: float | None = None  # at most this many frames per second of video time
    max_frames: int | None = None
    start: float = 0.0  # seconds of video time
    end: float | None = None


def resolve_video(overrides: Mapping[str, Any]) -> VideoOptions:
    """Validated frame selection from the header's text or JSON values; BadOption names the key."""
    stride = _number("frame_stride", overrides.get("frame_stride"), int, 1)
    fps = _number("fps", overrides.get("fps"), float, None)
    max_frames = _number("max_frames", overrides.get("max_frames"), int, None)
    start = _number("start", overrides.get("start"), float, 0.0, minimum=0.0)
    end = _number("end", overrides.get("end"), float, None)
    if end is not None and end <= start:
        raise BadOption("end", f"{end:g} s is not after start ({start:g} s)")
    return VideoOptions(stride, fps, max_frames, start, end)


def _number(key: str, value: Any, kind: type, default: Any, minimum: float | None = None) -> Any:
    """A positive int or float (or >= minimum when given) from text or JSON; default if absent."""
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = kind(value)
        except ValueError:
            raise BadOption(key, f"{_show(value)} is not {_kind_name(kind)}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadOption(key, f"expected {_kind_name(kind)}")
    if kind is int and not isinstance(value, int):
        raise BadOption(key, f"{_show(value)} is not an integer")
    if not math.isfinite(value):
        raise BadOption(key, f"{_show(value)} is not finite")
    if minimum is not None and value < minimum:
        raise BadOption(key, f"{value:g} is below {minimum:g}")
    if minimum is None and value <= 0:
        raise BadOption(key, f"{value:g} is not positive")
    return kind(value)


def _kind_name(kind: type) -> str:
    return "an integer" if kind is int else "a number"


@dataclass(frozen=True)
class ClipInfo:
    """What the container declares; frames and duration None where it does not say."""

    format: str
    width: int
    height: int
    fps: float
    frames: int | None
    duration: float | None

    def selected(self, options: VideoOptions) -> int | None:
        """How many frames the options select from the declared ones (None: unknown)."""
        if self.frames is None or self.fps <= 0:
            return options.max_frames
        end = self.duration or self.frames / self.fps
        if options.end is not None:
            end = min(end, options.end)
        seconds = max(0.0, end - options.start)
        count = math.ceil(seconds * self.fps / options.frame_stride)
        if options.fps is not None:
            count = min(count, math.ceil(seconds * options.fps))
        if options.max_frames is not None:
            count = min(count, options.max_frames)
        return count

    def as_json(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "fps": round(self.fps, 3),
            "frames": self.frames,
            "duration": None if self.duration is None else round(self.duration, 3),
        }


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based, in the clip
    time: float  # seconds of video time (the frame's own timestamp)
    pixels: np.ndarray  # HxWx3 uint8 BGR, rotation metadata applied


def open_clip(path: Path, head: bytes, max_pixels: int) -> tuple[Any, ClipInfo]:
    """cv2.VideoCapture on the clip and what it declares; UnreadableVideo or ImageTooLarge."""
    fmt = container(head)
    if fmt is None:
        raise UnreadableVideo(_not_a_video(head))
    # One decoder thread: the reader's own (FrameReader) already overlaps decoding with the
    # inference, and FFmpeg's threads would come and go with every clip (1080p MPEG-4 decodes in
    # ~6 ms a frame on one thread, well ahead of the inference).
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not capture.isOpened():
        capture.release()
        raise UnreadableVideo(_why_unopened(path, fmt))
    # The size as shown: OpenCV applies rotation metadata to the frames and to these.
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width <= 0 or height <= 0:
        capture.release()
        raise UnreadableVideo(f"the {fmt} clip declares no frame size (no video stream?)")
    if width * height > max_pixels:
        capture.release()
        raise ImageTooLarge(width, height, max_pixels)
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if math.isfinite(fps) and fps > 0 else 0.0
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    frames = int(count) if math.isfinite(count) and count > 0 else None
    duration = frames / fps if frames and fps else None
    return capture, ClipInfo(fmt, width, height, fps, frames, duration)


def _not_a_video(head: bytes) -> str:
    try:  # a still image labelled as video: say what it is
        image = read_header(head + b"\x00" * 64)
    except UnreadableImage:
        return f"the body is not a supported video ({SUPPORTED})"
    return (
        f"the body is a {image.format} image, not a video: send it with an image Content-Type "
        f"(image/{image.format.lower()})"
    )


def _why_unopened(path: Path, fmt: str) -> str:
    """An MP4 with only sound tracks says so; anything else is cut short or corrupt."""
    if fmt == "MP4":
        handlers = _mp4_handlers(path)
        if handlers and b"vide" not in handlers:
            kinds = ", ".join(sorted(h.decode("latin-1") for h in handlers))
            return f"the MP4 clip has no video track (its tracks: {kinds}); audio is not analysed"
    return f"the {fmt} clip cannot be opened: it is truncated or corrupt, or has no video track"


def _mp4_handlers(path: Path, limit: int = 64 * 1024 * 1024) -> set[bytes]:
    """The handler types ('vide', 'soun', ...) of the MP4's tracks, from its `hdlr` boxes (read
    only where the clip failed to open; the moov box is small, the scan stops at `limit`)."""
    found: set[bytes] = set()
    with open(path, "rb") as file:
        data = file.read(limit)
    at = data.find(b"hdlr")
    while at >= 0 and at + 16 <= len(data):
        handler = data[at + 12 : at + 16]
        if handler.isalpha():
            found.add(handler)
        at = data.find(b"hdlr", at + 4)
    return found - {b"mhlr", b"dhlr"}  # QuickTime's media/data handler components, not tracks


@dataclass
class Ending:
    """Why the frames stopped: `incomplete` (None: the clip or the options ended them)."""

    incomplete: str | None = None
    last_time: float | None = None
    total: int | None = None  # frames in the clip, once the decoder reached its end


class FrameReader:
    """The selected frames of an open capture, decoded ahead by a thread; iterate once."""

    def __init__(
        self,
        capture: Any,
        info: ClipInfo,
        options: VideoOptions,
        max_pixels: int,
        cap: int,
        executor: Executor,
    ):
        self._capture, self._info, self._options = capture, info, options
        self._max_pixels, self._cap = max_pixels, cap
        self._queue: queue.Queue[Frame | BaseException | None] = queue.Queue(QUEUE_FRAMES)
        self._stop = threading.Event()
        self.ending = Ending()
        self._executor = executor
        self._reading: Future[None] | None = None

    def __iter__(self) -> Iterator[Frame]:
        self._reading = self._executor.submit(self._run)
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the reader (the consumer may stop early) and release the capture."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a reader waiting on a full queue
                self._queue.get_nowait()
        if self._reading is not None:
            self._reading.result()  # _run never raises: it hands its exception over
        self._capture.release()

    def _put(self, item: Frame | BaseException | None) -> bool:
        """Hand an item over unless the consumer has gone; False once it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            self._read()
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        else:
            self._put(None)

    def _read(self) -> None:
        capture, options, ending = self._capture, self._options, self.ending
        index, taken, last_slot = -1, 0, -1
        while not self._stop.is_set():
            if not capture.grab():
                ending.incomplete = self._cut_short(index)
                ending.total = index + 1
                return
            index += 1
            seconds = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            ending.last_time = seconds
            if seconds < options.start - 1e-6 or index % options.frame_stride:
                continue
            if options.end is not None and seconds >= options.end - 1e-6:
                return
            if options.fps is not None:
                slot = math.floor(seconds * options.fps + 1e-6)
                if slot <= last_slot:
                    continue
                last_slot = slot
            if taken >= self._cap:
                ending.incomplete = (
                    f"stopped at the frame cap ({self._cap} frames, SERVE_VIDEO_MAX_FRAMES); "
                    "select fewer with frame_stride, fps, max_frames, start or end"
                )
                return
            ok, pixels = capture.retrieve()
            if not ok or pixels is None:
                ending.incomplete = f"frame {index} could not be decoded (corrupt)"
                return
            if pixels.shape[0] * pixels.shape[1] > self._max_pixels:
                raise ImageTooLarge(pixels.shape[1], pixels.shape[0], self._max_pixels)
            if not self._put(Frame(index, seconds, pixels)):
                return
            taken += 1
            if options.max_frames is not None and taken >= options.max_frames:
                return

    def _cut_short(self, index: int) -> str | None:
        """The reason when the clip ended before its declared duration, else None."""
        info, last = self._info, self.ending.last_time
        if info.duration is None or info.fps <= 0:
            return None
        if index < 0:
            return "no frame could be decoded"
        ends = (last or 0.0) + 1.0 / info.fps
        if info.duration - ends <= max(MISSING_SECONDS, 2.0 / info.fps):
            return None
        return (
            f"the clip ends at {ends:.2f} s (frame {index}), before its declared "
            f"{info.duration:.2f} s: truncated or corrupt"
        )
