"""Video clips the server meets, as bytes: good ones (OpenCV's VideoWriter) and odd ones,
hand-built with PyAV or by editing the container's bytes: audio only, zero frames, a variable
frame rate, rotation metadata, cut short, corrupt. The bad-request corpus and the tests use them.

PyAV (requirements-test.txt) is imported only by the builders that need it; the server reads video
with OpenCV alone.
"""

from __future__ import annotations

import fractions
import struct
import tempfile
from pathlib import Path

import cv2
import numpy as np

FOURCCS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


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


def sliding(frames: int, picture: np.ndarray, step: int = 4) -> list[np.ndarray]:
    """The picture shifted right by `step` pixels a frame (wrapping): motion for the encoder."""
    return [np.roll(picture, k * step, axis=1) for k in range(frames)]


def clip_bytes(suffix: str, pictures: list[np.ndarray], fps: float = 30.0) -> bytes:
    """The pictures as a clip file's bytes (.mp4, .avi or .mkv)."""
    with tempfile.TemporaryDirectory() as folder:
        return write_clip(Path(folder) / f"clip{suffix}", pictures, fps).read_bytes()


def variable_rate_bytes(pictures: list[np.ndarray], times_ms: list[int]) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return variable_rate_clip(Path(folder) / "vfr.mkv", pictures, times_ms).read_bytes()


def audio_only_bytes(seconds: float = 1.0) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return audio_only_clip(Path(folder) / "audio.mp4", seconds).read_bytes()
