"""The exact JPEG decode, fast: libjpeg-turbo's TurboJPEG API (through simplejpeg), with the EXIF
orientation applied as OpenCV applies it.

OpenCV and simplejpeg run the same libjpeg-turbo algorithms (accurate integer IDCT, smooth chroma
upsampling), so they give the same pixels, bit for bit, but OpenCV's wheel decodes 1.5-2.1x
slower (~1 MP photos; 1.5x at 12 MP; `python -m bench` prints both side by side): the server's
decode of bus.jpg and zidane.jpg went from 7.3 to 4.7 ms (docs/serving.md, "Decoding"). OpenCV
still decodes the big photos at half size (there both take the same time). This is a fast path
only: `decode` answers None for anything it cannot decode exactly as `cv2.imdecode(data,
IMREAD_COLOR)` would, and the caller then decodes with OpenCV, which also words the errors:
- a colour space other than YCbCr or greyscale (CMYK, YCCK, RGB: OpenCV converts those itself);
- libjpeg warnings (corrupt data it can recover from: OpenCV keeps the image, strict mode here
  raises) and every other decode error;
- EXIF that is not one clean orientation tag in the first APP1 segment's first IFD.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import cv2
import numpy as np
import simplejpeg

_EXIF = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112
_SHORT = 3
_COLOUR_SPACES = frozenset({"YCbCr", "Gray"})
# Markers without a length or payload: TEM, RST0-7, SOI, EOI.
STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})
SOS = 0xDA  # start of scan: entropy-coded data follows its header segment
APP1 = 0xE1


def marker_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, stop) of each marker after SOI, up to and including the first start of
    scan: a segment's payload is data[start:stop] (stop may pass the end of a file cut short); a
    standalone marker has start == stop. Stops without SOS where the data ends first; ValueError
    where a marker is expected and something else is there, or a length is under 2. The pixel
    guard (serve/decode.py) and the EXIF reader below both walk a JPEG with this."""
    pos, end = 2, len(data)
    while pos < end:
        if data[pos] != 0xFF:
            raise ValueError("expected a marker")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            return
        marker = data[pos]
        pos += 1
        if marker in STANDALONE:
            yield marker, pos, pos
            continue
        if pos + 2 > end:
            return
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise ValueError("bad segment length")
        yield marker, pos + 2, pos + length
        if marker == SOS:
            return
        pos += length


def decode(data: bytes) -> np.ndarray | None:
    """HxWx3 uint8 BGR with the EXIF orientation applied, as cv2.imdecode gives it; or None where
    only OpenCV can say (see the module docstring)."""
    orientation = exif_orientation(data)
    if orientation is None:
        return None
    try:
        height, width, colour_space, _ = simplejpeg.decode_jpeg_header(data)
        if colour_space not in _COLOUR_SPACES:
            return None
        image = simplejpeg.decode_jpeg(data, colorspace="BGR", strict=True)
    except ValueError:  # simplejpeg's one error type: corrupt, truncated, unsupported
        return None
    if image.shape != (height, width, 3):
        return None
    return orient(image, orientation)


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """The image as displayed under EXIF `orientation` (1-8): OpenCV's flips and transposes."""
    if orientation >= 5:  # the stored rows are the displayed columns
        image = cv2.transpose(image)
    flip = {2: 1, 3: -1, 4: 0, 6: 1, 7: -1, 8: 0}.get(orientation)
    return image if flip is None else cv2.flip(image, flip)


def exif_orientation(data: bytes) -> int | None:
    """The orientation OpenCV applies (1 when there is none), or None when it cannot be told for
    sure. OpenCV reads the first APP1 segment only, as EXIF; a JPEG whose first APP1 is something
    else (XMP), whose markers this walk does not follow to the first scan, or whose EXIF this
    strict reader does not follow, goes to OpenCV."""
    try:
        payload = _first_app1(data)
    except ValueError:
        return None
    if payload is None:
        return 1
    if not payload.startswith(_EXIF):
        return None
    return _ifd0_orientation(payload[len(_EXIF) :])


def _first_app1(data: bytes) -> bytes | None:
    """The payload of the first APP1 segment before the first scan, None if there is none;
    ValueError where the segments do not lead cleanly to a scan."""
    for marker, start, stop in marker_segments(data):
        if marker == SOS:
            return None
        if marker in STANDALONE:
            raise ValueError("a standalone marker before the scan")
        if stop > len(data):
            raise ValueError("a segment runs past the end")
        if marker == APP1:
            return data[start:stop]
    raise ValueError("no scan")


def _ifd0_orientation(tiff: bytes) -> int | None:
    if len(tiff) < 8:
        return None
    if tiff[:4] == b"II*\x00":
        order = "<"
    elif tiff[:4] == b"MM\x00*":
        order = ">"
    else:
        return None
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd < 8 or ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    entries = ifd + 2
    if entries + 12 * count > len(tiff):
        return None
    found = [
        struct.unpack(order + "HHIH", tiff[at : at + 10])
        for at in range(entries, entries + 12 * count, 12)
        if struct.unpack(order + "H", tiff[at : at + 2])[0] == _ORIENTATION_TAG
    ]
    if not found:
        return 1  # EXIF without an orientation: OpenCV leaves the image as stored
    if len(found) > 1:
        return None
    _, kind, n, value = found[0]
    return value if kind == _SHORT and n == 1 and 1 <= value <= 8 else None
