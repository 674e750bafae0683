"""serve/jpeg.py, the fast exact JPEG decode, against its oracle: every JPEG it decodes comes out as
`cv2.imdecode(data, IMREAD_COLOR)` gives it, bit for bit (EXIF orientation included), and whatever
it cannot decode that way it hands back to OpenCV (None), so the server's answer never depends on
which decoder ran."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from reliability.corpus import with_app1
from serve import jpeg
from serve.decode import decode_image
from tests.support.images import exif

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def opencv(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def photo_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients, edges and noise: every IDCT and upsampling path gets work."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / max(width, 1), y / max(height, 1), (x + y) % 64 / 64], axis=-1) * 255
    image[height // 3 : height // 2, width // 4 : width // 2] = (20, 200, 90)
    image += rng.normal(0, 6, image.shape)
    return image.clip(0, 255).astype(np.uint8)


def encode(image: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90, *params])
    assert ok
    return data.tobytes()


def assert_fast_and_exact(data: bytes) -> None:
    fast = jpeg.decode(data)
    assert fast is not None, "expected the fast path"
    expected = opencv(data)
    assert fast.shape == expected.shape and fast.dtype == np.uint8
    assert np.array_equal(fast, expected)
    assert fast.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("name", ["bus.jpg", "zidane.jpg"])
def test_real_photos_decode_exactly(name: str):
    assert_fast_and_exact((SAMPLES / name).read_bytes())


@pytest.mark.parametrize(
    "params",
    [
        (),  # 4:2:0
        (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
        (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422),
        (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411),
        (cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        (cv2.IMWRITE_JPEG_OPTIMIZE, 1),
        (cv2.IMWRITE_JPEG_RST_INTERVAL, 3),
    ],
    ids=["420", "444", "422", "411", "progressive", "optimized", "restarts"],
)
@pytest.mark.parametrize("size", [(1, 1), (7, 13), (333, 1001), (640, 480)])
def test_every_layout_and_odd_size_decodes_exactly(params: tuple[int, ...], size):
    width, height = size
    assert_fast_and_exact(encode(photo_like(width, height), *params))


def test_greyscale_becomes_three_equal_channels_as_in_opencv():
    grey = cv2.cvtColor(photo_like(301, 199), cv2.COLOR_BGR2GRAY)
    assert_fast_and_exact(encode(grey))


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_opencv_applies_it(orientation: int, order: str):
    data = with_app1(encode(photo_like(160, 90)), exif([(0x0112, 3, 1, orientation)], order))
    assert jpeg.exif_orientation(data) == orientation
    assert_fast_and_exact(data)
    assert decode_image(data, 10**8).shape[:2] == ((160, 90) if orientation >= 5 else (90, 160))


def test_exif_without_an_orientation_leaves_the_image_as_stored():
    data = with_app1(encode(photo_like(64, 32)), exif([(0x010F, 2, 1, 0)]))  # Make only
    assert jpeg.exif_orientation(data) == 1
    assert_fast_and_exact(data)


@pytest.mark.parametrize(
    "payload",
    [
        b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>",  # XMP first: OpenCV reads it as EXIF
        exif([(0x0112, 3, 1, 0)]),  # out of range
        exif([(0x0112, 3, 1, 9)]),
        exif([(0x0112, 4, 1, 6)]),  # LONG, not SHORT
        exif([(0x0112, 3, 1, 6), (0x0112, 3, 1, 3)]),  # two orientations
        b"Exif\x00\x00XX*\x00\x08\x00\x00\x00",  # no byte order
        b"Exif\x00\x00II*\x00\xff\x00\x00\x00",  # the IFD is past the end
        b"Exif\x00\x00II*\x00",  # the TIFF header cut short
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00",  # 5 entries, none there
    ],
    ids=[
        "xmp-first",
        "zero",
        "nine",
        "long",
        "twice",
        "no-order",
        "ifd-past-end",
        "tiff-cut",
        "entries-cut",
    ],
)
def test_unclear_exif_goes_to_opencv(payload: bytes):
    data = with_app1(encode(photo_like(48, 40)), payload)
    assert jpeg.decode(data) is None
    assert np.array_equal(decode_image(data, 10**8), opencv(data))


def test_cmyk_goes_to_opencv():
    out = io.BytesIO()
    Image.new("CMYK", (40, 30), (10, 200, 30, 5)).save(out, "JPEG")
    data = out.getvalue()
    assert jpeg.decode(data) is None
    assert np.array_equal(decode_image(data, 10**8), opencv(data))


def test_damaged_jpegs_never_decode_differently_from_opencv():
    """Bytes changed inside the scan: libjpeg recovers from some (OpenCV keeps the picture),
    fails on others. The fast path either answers exactly what OpenCV answers or hands over."""
    good = encode(photo_like(200, 150, seed=3), cv2.IMWRITE_JPEG_RST_INTERVAL, 2)
    scan = good.index(b"\xff\xda")
    rng = np.random.default_rng(5)
    handed_over = 0
    for _ in range(60):
        damaged = bytearray(good)
        for at in rng.integers(scan + 20, len(good) - 2, size=3):
            damaged[at] = int(rng.integers(0, 256))
        fast = jpeg.decode(bytes(damaged))
        if fast is None:
            handed_over += 1
        else:
            assert np.array_equal(fast, opencv(bytes(damaged)))
    assert handed_over > 0  # the damage was real: libjpeg warned (or failed) on some


@pytest.mark.parametrize(
    "data",
    [b"\xff\xd8\xff", b"\xff\xd8\xff\xe1\x00", b"\xff\xd8" + b"\x00" * 50],
    ids=["marker-only", "segment-cut", "no-markers"],
)
def test_broken_headers_are_handed_over_without_raising(data: bytes):
    assert jpeg.exif_orientation(data) is None
    assert jpeg.decode(data) is None
