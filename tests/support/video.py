"""Video clips for the tests: moving shapes with their true boxes (OpenCV's VideoWriter), and the
odd ones a server meets (hand-built with PyAV or by editing the container's bytes): audio only,
zero frames, a variable frame rate, rotation metadata, cut short, corrupt.

PyAV (requirements-test.txt) makes only fixtures; the server reads video with OpenCV alone.
"""

from __future__ import annotations

import fractions
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from demo.shapes import _background, _draw

CONTENT_TYPES = {".mp4": "video/mp4", ".avi": "video/x-msvideo", ".mkv": "video/x-matroska"}
FOURCCS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


@dataclass(frozen=True)
class Mover:
    class_id: int
    size: int
    lane: int  # the horizontal band it moves in: shapes never overlap
    x: float  # centre at frame 0
    speed: float  # pixels per frame, bouncing off the sides
    color: tuple[int, int, int]


def _position(mover: Mover, frame: int, width: int) -> int:
    """The centre's x at `frame`, bouncing between the sides."""
    low, high = mover.size // 2 + 1, width - mover.size // 2 - 2
    span = high - low
    travelled = (mover.x - low + mover.speed * frame) % (2 * span)
    return int(low + (travelled if travelled <= span else 2 * span - travelled))


def moving_shapes(
    frames: int, width: int = 320, height: int = 320, seed: int = 0, lanes: int = 3
) -> tuple[list[np.ndarray], list[list[dict]]]:
    """`frames` pictures of 1-`lanes` shapes sliding across a fixed noisy gradient, and each
    frame's true boxes ({"box", "class_id"}, inclusive of the drawn edge, as demo.shapes)."""
    rng = np.random.default_rng(seed)
    background = _background(rng, height, width)
    lane_height = height // lanes
    movers = []
    for lane in range(lanes):
        if lane and rng.random() < 0.25:
            continue
        size = int(rng.uniform(min(width, height) / 10, lane_height - 8))
        mean = background[lane * lane_height : (lane + 1) * lane_height].reshape(-1, 3).mean(0)
        color = rng.integers(0, 256, 3)
        while np.abs(color - mean).sum() <= 180:
            color = rng.integers(0, 256, 3)
        movers.append(
            Mover(
                int(rng.integers(0, 3)),
                size,
                lane,
                float(rng.uniform(size, width - size)),
                float(rng.uniform(1.5, 6.0) * rng.choice([-1, 1])),
                (int(color[0]), int(color[1]), int(color[2])),
            )
        )
    pictures, truth = [], []
    for index in range(frames):
        image = background.copy()
        boxes = []
        for mover in movers:
            cx = _position(mover, index, width)
            cy = mover.lane * lane_height + lane_height // 2
            mask = np.zeros((height, width), np.uint8)
            _draw(mask, mover.class_id, cx, cy, mover.size, (255, 255, 255))
            _draw(image, mover.class_id, cx, cy, mover.size, mover.color)
            ys, xs = np.nonzero(mask > 127)
            box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
            boxes.append({"box": box, "class_id": mover.class_id})
        pictures.append(image)
        truth.append(boxes)
    return pictures, truth


def write_clip(path: Path, pictures: list[np.ndarray], fps: float = 30.0) -> Path:
    """The pictures as a clip, in the codec OpenCV's VideoWriter uses for the suffix."""
    height, width = pictures[0].shape[:2] if pictures else (64, 64)
    fourcc = cv2.VideoWriter.fourcc(*FOURCCS[path.suffix])
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {path.suffix}"
    for picture in pictures:
        writer.write(picture)
    writer.release()
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame of the clip, as OpenCV decodes it (what the server sees)."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def noise_clip(path: Path, frames: int = 90, width: int = 160, height: int = 120) -> Path:
    """Frames of noise: every frame costs the encoder bytes, so a cut at half the file is a cut
    at about half the frames."""
    rng = np.random.default_rng(7)
    pictures = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(frames)]
    return write_clip(path, pictures)


def cut(data: bytes, share: float = 0.5) -> bytes:
    """The first `share` of a file: a clip cut short in transfer."""
    return data[: int(len(data) * share)]


def corrupt(data: bytes, share: float = 0.5, length: int = 4096) -> bytes:
    """`length` bytes zeroed from `share` of the way in: a damaged stretch in the middle."""
    at = int(len(data) * share)
    return data[:at] + b"\x00" * length + data[at + length :]


_IDENTITY = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_ROTATE_90 = struct.pack(">9I", 0, 0x10000, 0, 0xFFFF0000, 0, 0, 0, 0, 0x40000000)


def rotated(mp4: bytes) -> bytes:
    """The MP4 with its video track's display matrix (tkhd) turned by 90 degrees, as a phone
    held upright records: the stored frames are landscape, the player shows them portrait."""
    track = mp4.index(b"tkhd")
    at = mp4.index(_IDENTITY, track)
    return mp4[:at] + _ROTATE_90 + mp4[at + len(_IDENTITY) :]


def variable_rate_clip(path: Path, pictures: list[np.ndarray], times_ms: list[int]) -> Path:
    """A Matroska clip whose frames are shown at the given times (a variable frame rate)."""
    import av

    height, width = pictures[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = fractions.Fraction(1, 1000)
        for picture, at in zip(pictures, times_ms, strict=True):
            frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
            frame.pts, frame.time_base = at, stream.time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def audio_only_clip(path: Path, seconds: float = 1.0) -> Path:
    """An MP4 with one AAC track of silence and no video track."""
    import av

    rate = 44100
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate)
        samples = 1024
        for k in range(int(seconds * rate / samples)):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, samples), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, k * samples
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def zero_frames(mkv: bytes) -> bytes:
    """A Matroska clip cut before its first Cluster: the header and its video track, no frame."""
    return mkv[: mkv.index(b"\x1f\x43\xb6\x75")]
