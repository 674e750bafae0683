"""Bad (and odd but valid) requests, each with the answer docs/serving.md promises for it.

Used by the soak (`python -m reliability.soak`) and by tests/reliability. Every case is sent as raw
bytes over a socket (see `reliability.wire`), so a lying Content-Length or an overlong header
reaches the server exactly as built.
"""

from __future__ import annotations

import base64
import functools
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from reliability.wire import NO_ANSWER, build

ATTRS = "X-Amzn-SageMaker-Custom-Attributes"
MIB = 1024 * 1024
BODY_LIMIT = 6 * MIB  # the server's default MAX_BODY_BYTES


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]  # the request, as bytes on the wire
    status: int  # the documented answer; NO_ANSWER: the server closes without one
    json_body: bool = True  # False: refused by waitress itself, before the app (plain text)
    half_close: bool = False  # the client sends EOF after its bytes (it will send no more)
    words: tuple[str, ...] = ()  # expected in the JSON error message


# --- pictures ----------------------------------------------------------------------------------


@functools.cache
def picture(width: int = 320, height: int = 240, seed: int = 7) -> np.ndarray:
    """Filled shapes on a noisy gradient: the kind of picture the bundled model knows."""
    from demo.shapes import make_image

    image, _ = make_image(np.random.default_rng(seed), height, width)
    return image


def encode(image: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    ok, buffer = cv2.imencode(ext, image, params or [])
    if not ok:
        raise RuntimeError(f"cannot encode {ext}")
    return buffer.tobytes()


@functools.cache
def good_jpeg() -> bytes:
    return encode(picture(), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90])


@functools.cache
def good_png() -> bytes:
    return encode(picture(256, 256, seed=3), ".png")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (8-bit RGB), with a little real data after it."""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    idat = _chunk(b"IDAT", zlib.compress(b"\0" * 4096))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + _chunk(b"IEND", b"")


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def animated_png() -> bytes:
    """APNG, two frames: a decoder without APNG support shows the first (the default image)."""
    chunks = _png_chunks(good_png())
    ihdr = chunks[0][1]
    width, height = struct.unpack(">II", ihdr[:8])
    idat = b"".join(data for kind, data in chunks if kind == b"IDAT")

    def fctl(seq: int) -> bytes:
        return _chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, width, height, 0, 0, 1, 10, 0, 0))

    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"acTL", struct.pack(">II", 2, 0))
    out += fctl(0) + _chunk(b"IDAT", idat)
    out += fctl(1) + _chunk(b"fdAT", struct.pack(">I", 2) + idat)
    return out + _chunk(b"IEND", b"")


def animated_webp() -> bytes:
    """Two-frame animated WebP (OpenCV's encoder); the server answers for the first frame."""
    frames = [picture(160, 120, seed=s) for s in (1, 2)]
    animation = cv2.Animation()
    animation.frames, animation.durations = frames, [100, 100]
    ok, buffer = cv2.imencodeanimation(".webp", animation)
    if not ok:
        raise RuntimeError("cannot encode an animated WebP")
    return buffer.tobytes()


def animated_gif() -> bytes:
    """A real two-frame 1 x 1 GIF89a: GIF is not a supported format."""
    frame = (
        b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control: 100 ms
        + b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00"  # image descriptor, 1 x 1
        + b"\x02\x02\x44\x01\x00"  # LZW data
    )
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    return b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff" + loop + frame * 2 + b";"


def corrupt_jpeg() -> bytes:
    """A JPEG whose first segment has an impossible length."""
    data = bytearray(good_jpeg())
    data[4:6] = b"\x00\x01"  # the APP0 segment's length: 1, less than its own 2 bytes
    return bytes(data)


def corrupt_png() -> bytes:
    """A PNG whose compressed pixel data is garbage (the CRCs are recomputed, so it parses)."""
    chunks = _png_chunks(good_png())
    rng = np.random.default_rng(1)
    out = b"\x89PNG\r\n\x1a\n"
    for kind, data in chunks:
        if kind == b"IDAT":
            data = rng.integers(0, 256, len(data), dtype=np.uint8).tobytes()
        out += _chunk(kind, data)
    return out


def random_bytes(size: int = 20000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


# --- requests ----------------------------------------------------------------------------------


def invoke(
    body: bytes, content_type: str | None = "image/jpeg", **headers: str
) -> Callable[[], bytes]:
    """A POST /invocations, built when the case is sent."""
    extra = {"Content-Type": content_type} if content_type is not None else {}
    extra.update({k.replace("_", "-"): v for k, v in headers.items()})
    return lambda: build("POST", "/invocations", extra, body)


def lazy_invoke(make_body: Callable[[], bytes], content_type: str = "image/jpeg", **headers: str):
    return lambda: invoke(make_body(), content_type, **headers)()


def json_invoke(document: object | str, **headers: str) -> Callable[[], bytes]:
    text = document if isinstance(document, str) else json.dumps(document)
    return invoke(text.encode(), "application/json", **headers)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _raw(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _head_only(method: str, path: str, headers: dict[str, str]) -> Callable[[], bytes]:
    return lambda: build(method, path, headers)


def _lying_length(delta: int) -> Callable[[], bytes]:
    """Content-Length off by `delta` from the body actually sent."""

    def make() -> bytes:
        body = good_jpeg()
        headers = {"Content-Type": "image/jpeg", "Content-Length": str(len(body) + delta)}
        return build("POST", "/invocations", headers, body)

    return make


def _chunked(body: bytes, bad_size: bool = False) -> Callable[[], bytes]:
    size = b"zz" if bad_size else f"{len(body):x}".encode()
    payload = size + b"\r\n" + body + b"\r\n0\r\n\r\n"
    headers = {"Content-Type": "image/jpeg", "Transfer-Encoding": "chunked"}
    return lambda: build("POST", "/invocations", headers, payload)


def _gray_png() -> bytes:
    return encode(cv2.cvtColor(picture(), cv2.COLOR_BGR2GRAY), ".png")


def _png16() -> bytes:
    return encode(picture().astype(np.uint16) * 257, ".png")


def _rgba_png() -> bytes:
    return encode(cv2.cvtColor(picture(), cv2.COLOR_BGR2BGRA), ".png")


def _tiny(width: int, height: int) -> bytes:
    return encode(np.full((height, width, 3), 200, np.uint8), ".png")


def _jpeg_zero_height() -> bytes:
    data = bytearray(good_jpeg())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xC0)
    data[sof + 5 : sof + 7] = b"\x00\x00"
    return bytes(data)


def with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """`jpeg` with an APP1 segment (EXIF, XMP) holding `payload` right after SOI."""
    return jpeg[:2] + b"\xff\xe1" + len(payload + b"..").to_bytes(2, "big") + payload + jpeg[2:]


def _nested_json(depth: int) -> str:
    return '{"image": ' + "[" * depth + "]" * depth + "}"


IMAGE_OK = 200  # odd but valid: served


def size_cases(body_limit: int = BODY_LIMIT, video_limit: int = 0) -> tuple[Case, ...]:
    """The cases that depend on the server's MAX_BODY_BYTES (6 MiB real time, more for async):
    one byte over it (the app's JSON 413), and a Content-Length over what waitress accepts at
    all, 4x it or MAX_VIDEO_BYTES where that is larger (waitress's 413)."""
    over = body_limit + 1
    declared = max(100_000_000, 4 * body_limit + 1, video_limit + 1)
    limit_name = "6 MiB" if body_limit == BODY_LIMIT else f"{body_limit / MIB:g} MiB"
    return (
        Case(
            f"body 1 byte over {limit_name}",
            lambda: invoke(good_jpeg() + b"\0" * (over - len(good_jpeg())))(),
            413,
            words=(f"{over} bytes",),
        ),
        Case(
            f"Content-Length of {declared / 1e6:.0f} MB, no body",
            _head_only(
                "POST",
                "/invocations",
                {"Content-Type": "image/jpeg", "Content-Length": str(declared)},
            ),
            413,
            json_body=False,
        ),
    )


# --- video clips (reliability/video_clips.py) -------------------------------------------------


@functools.cache
def clip(suffix: str = ".mp4", frames: int = 12) -> bytes:
    """The corpus picture sliding across `frames` frames, as an .mp4, .avi or .mkv clip."""
    from reliability import video_clips

    return video_clips.clip_bytes(suffix, video_clips.sliding(frames, picture()))


def _video(make: Callable[[], bytes], content_type: str = "video/mp4", **headers: str):
    return lazy_invoke(make, content_type, **headers)


def _audio_only() -> bytes:
    from reliability.video_clips import audio_only_bytes

    return audio_only_bytes()


def _variable_rate() -> bytes:
    from reliability.video_clips import sliding, variable_rate_bytes

    return variable_rate_bytes(sliding(6, picture()), [0, 33, 200, 233, 700, 1000])


def _video_edit(edit: str, suffix: str = ".mp4") -> Callable[[], bytes]:
    def make() -> bytes:
        from reliability import video_clips

        return getattr(video_clips, edit)(clip(suffix, 45))

    return make


_VIDEO: tuple[Case, ...] = (
    Case("video: MP4", _video(clip), IMAGE_OK),
    Case("video: MP4 as octet-stream", _video(clip, "application/octet-stream"), IMAGE_OK),
    Case("video: audio-only MP4", _video(_audio_only), 400, words=("no video track",)),
    Case(
        "video: zero frames (Matroska)",
        _video(_video_edit("zero_frames", ".mkv"), "video/x-matroska"),
        400,
    ),
    Case("video: PNG labelled video/mp4", _video(good_png), 400, words=("PNG image",)),
    Case("video: random bytes as video/mp4", _video(random_bytes), 400, words=("not a supported",)),
    Case("video: variable frame rate", _video(_variable_rate, "video/x-matroska"), IMAGE_OK),
    Case("video: rotation metadata", _video(_video_edit("rotated")), IMAGE_OK),
    Case("video: MP4 cut short (no index)", _video(_video_edit("cut")), 400, words=("truncated",)),
    Case("video: Matroska cut short", _video(_video_edit("cut", ".mkv")), IMAGE_OK),
    Case("video: corrupt MP4", _video(_video_edit("corrupt")), IMAGE_OK),
    Case("video: Accept image/png", _video(clip, Accept="image/png"), 406),
    Case("video: JSON, bad base64", json_invoke({"video": "%%%"}), 400, words=("'video'",)),
    Case(
        "video: JSON, a PNG as the clip",
        lambda: json_invoke({"video": b64(good_png())})(),
        400,
        words=("PNG image",),
    ),
    Case(
        "video: frame_stride 0",
        _video(clip, **{ATTRS: "frame_stride=0"}),
        400,
        words=("'frame_stride'",),
    ),
    Case(
        "video: end before start", _video(clip, **{ATTRS: "start=2,end=1"}), 400, words=("'end'",)
    ),
)


def cases(body_limit: int = BODY_LIMIT, video_limit: int = 0) -> tuple[Case, ...]:
    """The corpus for a server whose MAX_BODY_BYTES is `body_limit` (and MAX_VIDEO_BYTES
    `video_limit`, where it is set above it)."""
    return _BEFORE_SIZES + size_cases(body_limit, video_limit) + _AFTER_SIZES


_BEFORE_SIZES: tuple[Case, ...] = (
    # bodies that are no usable image
    Case("empty body", invoke(b""), 400, words=("empty",)),
    Case("random bytes", invoke(random_bytes(), "application/octet-stream"), 400),
    Case("text as image/png", invoke(b"hello, world" * 10, "image/png"), 400),
    Case("truncated JPEG (half)", lazy_invoke(lambda: good_jpeg()[: len(good_jpeg()) // 2]), 400),
    Case("truncated JPEG (last byte)", lazy_invoke(lambda: good_jpeg()[:-1]), 400),
    Case("JPEG header only", lazy_invoke(lambda: good_jpeg()[:200]), 400),
    Case("corrupt JPEG marker", lazy_invoke(corrupt_jpeg), 400, words=("corrupt",)),
    Case("JPEG with zero height", lazy_invoke(_jpeg_zero_height), 400, words=("zero",)),
    Case("truncated PNG", lazy_invoke(lambda: good_png()[:5000], "image/png"), 400),
    Case("PNG signature only", invoke(b"\x89PNG\r\n\x1a\n", "image/png"), 400),
    Case("corrupt PNG data", lazy_invoke(corrupt_png, "image/png"), 400),
    Case(
        "PNG claiming 100000 x 100000",
        lazy_invoke(lambda: png_claiming(100000, 100000), "image/png"),
        413,
        words=("10000000000 pixels",),
    ),
    Case("PNG of 0 x 0 pixels", lazy_invoke(lambda: png_claiming(0, 0), "image/png"), 400),
    Case(
        "truncated WebP",
        lazy_invoke(lambda: encode(picture(), ".webp")[:300], "image/webp"),
        400,
    ),
    Case("truncated BMP", lazy_invoke(lambda: encode(picture(), ".bmp")[:9000], "image/bmp"), 400),
    Case("animated GIF (unsupported)", lazy_invoke(animated_gif, "image/gif"), 415),
    Case(
        "animated GIF as octet-stream", lazy_invoke(animated_gif, "application/octet-stream"), 400
    ),
    # odd but valid pictures: served
    Case("1 x 1 PNG", lazy_invoke(lambda: _tiny(1, 1), "image/png"), IMAGE_OK),
    Case("1 x 10000 PNG", lazy_invoke(lambda: _tiny(1, 10000), "image/png"), IMAGE_OK),
    Case("10000 x 1 PNG", lazy_invoke(lambda: _tiny(10000, 1), "image/png"), IMAGE_OK),
    Case("grayscale PNG", lazy_invoke(_gray_png, "image/png"), IMAGE_OK),
    Case("16-bit PNG", lazy_invoke(_png16, "image/png"), IMAGE_OK),
    Case("4-channel PNG", lazy_invoke(_rgba_png, "image/png"), IMAGE_OK),
    Case("animated PNG", lazy_invoke(animated_png, "image/png"), IMAGE_OK),
    Case("animated WebP", lazy_invoke(animated_webp, "image/webp"), IMAGE_OK),
    # EXIF the fast JPEG path does not read (serve/jpeg.py): OpenCV decodes these
    Case(
        "JPEG with its EXIF cut short",
        lazy_invoke(lambda: with_app1(good_jpeg(), b"Exif\x00\x00II*\x00")),
        IMAGE_OK,
    ),
    Case(
        "JPEG whose EXIF entries run past its end",
        lazy_invoke(lambda: with_app1(good_jpeg(), b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")),
        IMAGE_OK,
    ),
    # content types
    Case("text/plain", lazy_invoke(good_jpeg, "text/plain"), 415, words=("text/plain",)),
    Case(
        "form-urlencoded (curl -d)",
        lazy_invoke(good_jpeg, "application/x-www-form-urlencoded"),
        415,
    ),
    Case("multipart/form-data", lazy_invoke(good_jpeg, "multipart/form-data; boundary=x"), 415),
    Case("garbage Content-Type", lazy_invoke(good_jpeg, ";;;=="), 415),
    Case("no Content-Type, JPEG", lambda: invoke(good_jpeg(), None)(), IMAGE_OK),
    Case("no Content-Type, random bytes", invoke(random_bytes(3000, 1), None), 400),
    Case("PNG labelled image/jpeg", lazy_invoke(good_png, "image/jpeg"), IMAGE_OK),
    Case("Accept text/html", lazy_invoke(good_jpeg, "image/jpeg", Accept="text/html"), 406),
    # sizes and framing: size_cases(), then these
)
_AFTER_SIZES: tuple[Case, ...] = (
    Case("Content-Length shorter than the body", _lying_length(-1000), 400, words=("truncated",)),
    Case("Content-Length longer than the body", _lying_length(1000), NO_ANSWER, half_close=True),
    Case(
        "Content-Length not a number",
        _raw(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"),
        400,
        json_body=False,
    ),
    Case("chunked upload", lambda: _chunked(good_jpeg())(), IMAGE_OK),
    Case(
        "chunked, bad chunk size",
        lambda: _chunked(good_jpeg(), bad_size=True)(),
        400,
        json_body=False,
    ),
    Case(
        "not HTTP at all",
        _raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n"),
        400,
        json_body=False,
    ),
    Case(
        "header over waitress's 256 KiB",
        lambda: invoke(good_jpeg(), "image/jpeg", X_Padding="a" * 300_000)(),
        431,
        json_body=False,
    ),
    # JSON bodies
    Case("malformed JSON", json_invoke('{"image": '), 400),
    Case("JSON not UTF-8", invoke(b'{"image": "\xff\xfe"}', "application/json"), 400),
    Case("JSON array", json_invoke([1, 2]), 400),
    Case("JSON without image", json_invoke({"conf": 0.5}), 400),
    Case("JSON image not a string", json_invoke({"image": 5}), 400),
    Case("JSON nested 100000 deep", json_invoke(_nested_json(100_000)), 400),
    Case("bad base64", json_invoke({"image": "not base64 at all!"}), 400, words=("base64",)),
    Case("base64 of text", json_invoke({"image": b64(b"hello world")}), 400),
    Case(
        "unknown JSON key",
        lambda: json_invoke({"image": b64(good_jpeg()), "cnof": 0.5})(),
        400,
        words=("cnof",),
    ),
    Case(
        "JSON conf NaN",
        lambda: json_invoke(f'{{"image": "{b64(good_jpeg())}", "conf": NaN}}')(),
        400,
        words=("'conf'",),
    ),
    Case(
        "JSON max_det 10^5000",
        lambda: json_invoke(f'{{"image": "{b64(good_jpeg())}", "max_det": 1{"0" * 5000}}}')(),
        400,
    ),
    # options in the custom attributes header
    Case("conf negative", lazy_invoke(good_jpeg, **{ATTRS: "conf=-0.5"}), 400, words=("'conf'",)),
    Case("conf NaN", lazy_invoke(good_jpeg, **{ATTRS: "conf=nan"}), 400, words=("'conf'",)),
    Case("iou not a number", lazy_invoke(good_jpeg, **{ATTRS: "iou=half"}), 400, words=("'iou'",)),
    Case(
        "max_det negative",
        lazy_invoke(good_jpeg, **{ATTRS: "max_det=-3"}),
        400,
        words=("'max_det'",),
    ),
    Case("max_det 10^30", lazy_invoke(good_jpeg, **{ATTRS: "max_det=1" + "0" * 30}), 400),
    Case(
        "classes unknown",
        lazy_invoke(good_jpeg, **{ATTRS: "classes=dragon"}),
        400,
        words=("'classes'",),
    ),
    Case("agnostic not a bool", lazy_invoke(good_jpeg, **{ATTRS: "agnostic=2"}), 400),
    Case(
        "unknown header keys are ignored",
        lazy_invoke(good_jpeg, **{ATTRS: "trace=1,x,=,,"}),
        IMAGE_OK,
    ),
    Case("overlong conf (10 KB)", lazy_invoke(good_jpeg, **{ATTRS: "conf=" + "9" * 10_000}), 400),
    Case(
        "line feed inside a header (injection)",
        lazy_invoke(good_jpeg, X_Request_Id='"}\n{"level":"ERROR"'),
        400,
        json_body=False,
    ),
    Case(
        "hostile X-Request-Id", lazy_invoke(good_jpeg, X_Request_Id='"} {"level":"ERROR"'), IMAGE_OK
    ),
    *_VIDEO,
    # paths and methods
    Case("unknown path", _head_only("GET", "/admin", {}), 404),
    Case("path traversal", _head_only("GET", "/../../etc/passwd", {}), 404),
    Case("GET /invocations", _head_only("GET", "/invocations", {}), 405),
    Case("POST /ping", lambda: build("POST", "/ping", {"Content-Type": "image/jpeg"}, b"x"), 405),
    Case("DELETE /invocations", _head_only("DELETE", "/invocations", {}), 405),
    Case("PUT /execution-parameters", _head_only("PUT", "/execution-parameters", {}), 405),
    Case("unknown method BREW", _head_only("BREW", "/ping", {}), 400),
)

CASES: tuple[Case, ...] = cases()

# A good request whose answer every other request is compared with.
GOOD = Case("good JPEG", lazy_invoke(good_jpeg), 200)
