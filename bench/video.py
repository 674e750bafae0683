"""`python -m bench.video`: frames per second on a generated 1080p 30 fps clip beside the same
server's image throughput at c=4, per runtime and precision; and peak RSS against clip length.

Model: the benchmark's yolov7-tiny (random weights, full size, bench/models.py) at 640. For each
float configuration of bench/configs.py this machine runs, one server:

- images: 1080p JPEG frames of the clip, 4 clients for `--image-seconds` (bench/load.py);
- video: the clip POSTed once (JSON answer); frames/s = frames computed / the request's wall time
  (decode, inference and the answer, everything the client waits for).

The goal (issue 22): video frames/s >= 0.9 x the image rate, so decoding is never the bottleneck.

RSS: for each clip length a fresh server (onnxruntime FP32, the default) answers one 1080p photo,
then the clip with `frame_stride` (every frame is still decoded; the stride keeps the run short);
its peak RSS (VmHWM) after each is reported.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from bench.configs import available
from bench.load import generate
from bench.models import prepare
from bench.monitor import peak_rss_bytes
from bench.servers import ours

WIDTH, HEIGHT, FPS = 1920, 1080, 30
IMG_SIZE = 640
# Clips of up to 10 minutes at 1080p are ~1 GB: the server's async limits, not real time's.
SERVER_ENV = {
    "MAX_VIDEO_BYTES": str(2 * 1024**3),
    "SERVE_VIDEO_SECONDS": "3600",
    "SERVE_QUEUE_DEADLINE": "3600",
}


def background() -> np.ndarray:
    """A smooth gradient (a noisy one makes every key frame a megabyte)."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    t = (xs / WIDTH * 0.7 + ys / HEIGHT * 0.3)[..., None]
    start, end = np.array([40, 90, 160], np.float32), np.array([200, 170, 60], np.float32)
    return (start * (1 - t) + end * t).astype(np.uint8)


def write_clip(path: Path, seconds: float) -> Path:
    """1080p, 30 fps, mp4v: shapes crossing a gradient, as a traffic camera would show cars."""
    base = background()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for k in range(int(seconds * FPS)):
        frame = base.copy()
        x = (k * 9) % (WIDTH + 400) - 200
        cv2.rectangle(frame, (x, 300), (x + 260, 460), (30, 30, 220), -1)
        cv2.circle(frame, (WIDTH - x, 760), 110, (40, 200, 40), -1)
        cv2.rectangle(
            frame, ((x * 2) % WIDTH, 120), ((x * 2) % WIDTH + 90, 210), (220, 220, 220), -1
        )
        writer.write(frame)
    writer.release()
    return path


def photos(clip: Path, folder: Path, count: int = 4) -> list[Path]:
    """`count` frames of the clip as 1080p JPEGs (quality 90): the image load's bodies."""
    capture = cv2.VideoCapture(str(clip))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    paths = []
    for k in range(count):
        capture.set(cv2.CAP_PROP_POS_FRAMES, k * total // count)
        ok, frame = capture.read()
        assert ok, "the clip's own frames decode"
        path = folder / f"frame-{k}.jpg"
        cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    capture.release()
    return paths


def post(url: str, body: bytes, content_type: str, attributes: str = "") -> tuple[dict, float]:
    """One POST /invocations: (its JSON answer, seconds)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=7200)
    headers = {"Content-Type": content_type}
    if attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
    started = time.perf_counter()
    connection.request("POST", "/invocations", body=body, headers=headers)
    answer = connection.getresponse()
    data = answer.read()
    seconds = time.perf_counter() - started
    connection.close()
    if answer.status != 200:
        raise RuntimeError(f"{answer.status}: {data[:300]!r}")
    return json.loads(data), seconds


def throughput(model: Path, clip: Path, images: list[Path], image_seconds: float) -> list[dict]:
    """Video frames/s beside image requests/s at c=4, per float configuration."""
    runnable, skipped = available("yolov7-tiny")
    rows = []
    body = clip.read_bytes()
    for config in runnable:
        if config.model != "fp32" or config.intra_op is not None or config.inter_op != 1:
            continue  # the float exports at the server's thread defaults
        env = {**SERVER_ENV, **config.env()}
        with ours(model, env, config.expect()) as server:
            post(server.url, images[0].read_bytes(), "image/jpeg")  # warm
            # images before and after the clip: a shared machine's load moves between them
            before = generate(server.url, images, 4, image_seconds)
            answer, seconds = post(server.url, body, "video/mp4")
            after = generate(server.url, images, 4, image_seconds)
            rps = (before["throughput_rps"] + after["throughput_rps"]) / 2
            frames = len(answer["frames"])
            rows.append(
                {
                    "config": config.name,
                    "what": config.what,
                    "image_rps_c4": round(rps, 2),
                    "image_rps_before_after": [
                        round(before["throughput_rps"], 2),
                        round(after["throughput_rps"], 2),
                    ],
                    "image_errors": before["errors"] + after["errors"],
                    "video_fps": round(frames / seconds, 2),
                    "video_frames": frames,
                    "video_seconds": round(seconds, 1),
                    "ratio": round(frames / seconds / rps, 3),
                    "video_timing_ms": answer["timing_ms"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}", flush=True)
    return rows


def rss_by_length(model: Path, folder: Path, minutes: list[float], stride: int) -> list[dict]:
    rows = []
    photo = None
    for length in minutes:
        clip = write_clip(folder / f"clip-{length:g}min.mp4", length * 60)
        photo = photo or photos(clip, folder, 1)[0]
        with ours(model, SERVER_ENV) as server:
            post(server.url, photo.read_bytes(), "image/jpeg")
            after_photo = peak_rss_bytes(server.pid)
            answer, seconds = post(
                server.url, clip.read_bytes(), "video/mp4", f"frame_stride={stride}"
            )
            after_clip = peak_rss_bytes(server.pid)
        rows.append(
            {
                "minutes": length,
                "clip_mb": round(clip.stat().st_size / 1e6, 1),
                "frames_decoded": answer["video"]["frames"],
                "frames_computed": len(answer["frames"]),
                "seconds": round(seconds, 1),
                "peak_rss_photo_mib": round(after_photo / 2**20, 1),
                "peak_rss_clip_mib": round(after_clip / 2**20, 1),
                "growth_mib": round((after_clip - after_photo) / 2**20, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        clip.unlink()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.video", description=__doc__)
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="throughput clip")
    parser.add_argument("--image-seconds", type=float, default=20.0, help="image load at c=4")
    parser.add_argument("--minutes", type=float, nargs="*", default=[1, 5, 10])
    parser.add_argument("--stride", type=int, default=30, help="frame_stride of the RSS runs")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        folder = Path(tmp)
        model = prepare("yolov7-tiny", folder / "model", IMG_SIZE, end2end=False).raw
        result: dict = {"model": "yolov7-tiny (random weights)", "img_size": IMG_SIZE}
        if not args.skip_throughput:
            clip = write_clip(folder / "clip.mp4", args.clip_seconds)
            images = photos(clip, folder)
            result["throughput"] = throughput(model, clip, images, args.image_seconds)
        result["rss"] = rss_by_length(model, folder, args.minutes, args.stride)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
