"""Image bytes -> BGR pixels, refusing pixel bombs before any decoding.

The header of each supported format (JPEG, PNG, WebP, BMP) is parsed here to learn the image's
size; only then is it decoded: a JPEG by serve/jpeg.py (libjpeg-turbo's TurboJPEG API: the same
pixels as OpenCV's, 1.5-2x faster) where it can, everything else by OpenCV. Other formats are
refused: OpenCV can read many more, and each is more attack surface that nobody asked for.

A JPEG much larger than the model input may be decoded reduced (`decode_for_model`): libjpeg's
DCT scaling decodes 1/2, 1/4 or 1/8 of each side directly from the coefficients, several times
faster than the full decode that the letterbox would shrink anyway.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from serve import jpeg
from serve.errors import ImageTooLarge, UnreadableImage

SUPPORTED = "JPEG, PNG, WebP or BMP"

# Start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_JPEG_SOF = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)

# libjpeg's DCT scaling: IMREAD_REDUCED_COLOR_2 decodes 1/2 of each side (rounded up) straight from
# the coefficients. Only 1/2: at 1/4 and 1/8 (the chroma of a 4:2:0 JPEG then 1/8 and 1/16) the
# detections moved 3-5x more for little more speed (docs/serving.md, "Big photos"). Other formats
# would be decoded in full and then resized, which saves nothing, so only JPEGs are reduced.
REDUCED_FACTOR = 2
_REDUCED_FLAG = cv2.IMREAD_REDUCED_COLOR_2
# Below this many pixels a photo is decoded in full whatever the model input: decoding a ~1 MP JPEG
# takes ~6 ms against a 12 MP one's ~50 ms, so the saving there is small, and the default
# configuration then answers exactly as the official pipeline on everyday photos (the exactness
# tests run in it). Phone and drone photos (8-50 MP) are all above it.
REDUCED_MIN_PIXELS = 4_000_000

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def _truncated(fmt: str) -> UnreadableImage:
    return UnreadableImage(f"the {fmt} image is truncated")


def _corrupt(fmt: str, why: str) -> UnreadableImage:
    return UnreadableImage(f"the {fmt} image is corrupt: {why}")


@dataclass(frozen=True)
class Header:
    format: str
    width: int
    height: int
    complete: bool = True  # False: the file is cut short


def read_header(data: bytes) -> Header:
    """Format and size from the header alone, without decoding; raises UnreadableImage."""
    if data[:3] == b"\xff\xd8\xff":
        return Header("JPEG", *_jpeg_size(data))
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return Header("PNG", *_png_size(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Header("WebP", *_webp_size(data))
    if data[:2] == b"BM":
        return Header("BMP", *_bmp_size(data))
    raise UnreadableImage(f"the body is not a supported image ({SUPPORTED})")


def _png_size(data: bytes) -> tuple[int, int, bool]:
    if len(data) < 24:
        raise _truncated("PNG")
    if data[12:16] != b"IHDR":
        raise _corrupt("PNG", "the first chunk is not IHDR")
    width, height = struct.unpack(">II", data[16:24])
    # Walk the chunks to IEND: a cut-short file is refused with a clear message, rather than by
    # libpng (which also complains on stderr).
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunk_type = data[pos + 4 : pos + 8]
        pos += 12 + length
        if chunk_type == b"IEND":
            return width, height, pos <= len(data)
    return width, height, False


def _bmp_size(data: bytes) -> tuple[int, int, bool]:
    if len(data) < 30:
        raise _truncated("BMP")
    (pixels_at, header_size) = struct.unpack("<II", data[10:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height, _, bits = struct.unpack("<HHHH", data[18:26])
        compression = 0
    elif header_size >= 40:
        width, height, _, bits = struct.unpack("<iiHH", data[18:30])
        width, height = abs(width), abs(height)  # a negative height: rows stored top-down
        compression = struct.unpack("<I", data[30:34])[0] if len(data) >= 34 else 0
    else:
        raise _corrupt("BMP", f"unknown header size {header_size}")
    complete = True
    if compression in (0, 3):  # uncompressed rows: the file size is known in advance
        row = (width * bits + 31) // 32 * 4
        complete = len(data) >= pixels_at + row * height
    return width, height, complete


def _webp_size(data: bytes) -> tuple[int, int, bool]:
    if len(data) < 30:
        raise _truncated("WebP")
    complete = len(data) >= 8 + struct.unpack("<I", data[4:8])[0]  # the RIFF size
    return (*_webp_dimensions(data), complete)


def _webp_dimensions(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: frame tag, start code, 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            raise _corrupt("WebP", "bad VP8 start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: signature byte, then 14-bit (size - 1) fields
        if data[20] != 0x2F:
            raise _corrupt("WebP", "bad VP8L signature")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit (canvas size - 1) fields
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise _corrupt("WebP", "unknown chunk")


def _jpeg_size(data: bytes) -> tuple[int, int, bool]:
    """Walk the marker segments to the frame header and the first scan; is the scan complete?"""
    size: tuple[int, int] | None = None
    try:
        for marker, start, stop in jpeg.marker_segments(data):
            if marker == 0xD9:
                raise _corrupt("JPEG", "end of image before any scan")
            if marker in _JPEG_SOF and size is None:
                if start + 5 > len(data):
                    break
                height, width = struct.unpack(">HH", data[start + 1 : start + 5])
                if width == 0 or height == 0:
                    raise _corrupt("JPEG", "zero width or height")
                size = (width, height)
            elif marker == jpeg.SOS:
                if size is None:
                    raise _corrupt("JPEG", "scan before the frame header")
                # Inside scan data 0xFF is always followed by 0x00 or a restart marker, so the
                # byte pair FF D9 after the first scan is the end-of-image marker: without it, the
                # file is cut short (some decoders fill the missing rows with grey, say nothing).
                return (*size, data.find(b"\xff\xd9", stop) >= 0)
    except ValueError as exc:  # the walk's own complaints: not a marker, a bad length
        raise _corrupt("JPEG", str(exc)) from None
    if size is None:
        raise _truncated("JPEG")
    return (*size, False)


@dataclass(frozen=True)
class Decoded:
    """Decoded pixels, and the size of the image they come from (after EXIF orientation)."""

    pixels: np.ndarray  # HxWx3 uint8 BGR
    width: int  # the original image's, whatever `factor`
    height: int
    factor: int = 1  # pixels are the original reduced by this on each side: x_original = f * x


def reduction_factor(header: Header, img_size: int) -> int:
    """REDUCED_FACTOR for a JPEG of at least REDUCED_MIN_PIXELS whose long side is at least
    REDUCED_FACTOR * img_size, else 1.

    The letterbox scales the long side to img_size (the short side by the same ratio), so the
    reduced image still has at least as many pixels as the model sees on every side: the letterbox
    shrinks it or keeps it, never enlarges it.
    """
    if header.format != "JPEG" or header.width * header.height < REDUCED_MIN_PIXELS:
        return 1
    return REDUCED_FACTOR if max(header.width, header.height) >= REDUCED_FACTOR * img_size else 1


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode to an HxWx3 uint8 BGR array, as cv2.imread does (EXIF orientation applied)."""
    header = _checked_header(data, max_pixels)
    return _decode_exact(data, header, max_pixels)


def decode_for_model(data: bytes, max_pixels: int, img_size: int | None) -> Decoded:
    """Decode for a model with img_size x img_size input: a large JPEG reduced by
    `reduction_factor`, anything else exactly; img_size None: always exactly."""
    header = _checked_header(data, max_pixels)
    factor = 1 if img_size is None else reduction_factor(header, img_size)
    if factor > 1:
        reduced = _decode_reduced(data, header, factor)
        if reduced is not None:
            return reduced
    image = _decode_exact(data, header, max_pixels)
    return Decoded(image, image.shape[1], image.shape[0])


def _checked_header(data: bytes, max_pixels: int) -> Header:
    header = read_header(data)
    fmt, width, height = header.format, header.width, header.height
    if width <= 0 or height <= 0:
        raise _corrupt(fmt, "zero width or height")
    if width * height > max_pixels:
        raise ImageTooLarge(width, height, max_pixels)
    if not header.complete:
        raise _truncated(fmt)
    return header


def _decode_exact(data: bytes, header: Header, max_pixels: int) -> np.ndarray:
    image = jpeg.decode(data) if header.format == "JPEG" else None  # the same pixels, faster
    if image is None:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImage(
            f"the {header.format} image could not be decoded (truncated or corrupt)"
        )
    if image.shape[0] * image.shape[1] > max_pixels:  # the header lied
        raise ImageTooLarge(image.shape[1], image.shape[0], max_pixels)
    return image


def _decode_reduced(data: bytes, header: Header, factor: int) -> Decoded | None:
    """The JPEG decoded at 1/factor; None (decode it exactly instead) where the result does not
    tell the original size: a size that is not the header's, or an EXIF rotation that cannot be
    told from the reduced shape (a nearly square image)."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _REDUCED_FLAG)
    if image is None:
        return None  # the exact decode gives the error message
    width, height = header.width, header.height
    as_stored = (-(-width // factor), -(-height // factor))  # (w, h), rounded up
    shape = (image.shape[1], image.shape[0])
    if width != height and as_stored[0] == as_stored[1]:
        return None
    if shape == as_stored:
        return Decoded(image, width, height, factor)
    if shape == as_stored[::-1]:  # EXIF orientation 5-8: rotated by 90 degrees
        return Decoded(image, height, width, factor)
    return None
