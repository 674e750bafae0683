"""Property-based tests (hypothesis): decoding and option parsing raise nothing but the documented
typed errors, whatever bytes or values arrive. Bounded: a fixed number of examples, a deadline."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability.corpus import good_jpeg, good_png, png_claiming
from serve.app import _image_from_json, loads_json
from serve.decode import decode_image, read_header
from serve.errors import BadJson, BadOption, ImageTooLarge, UnreadableImage
from serve.options import KEYS, Options, from_custom_attributes, resolve

BOUNDED = settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
MAX_PIXELS = 4_000_000
NAMES = ["circle", "square", "triangle"]
MAGIC = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBP", b"BM", b""]


def _decodes_or_refuses(data: bytes) -> None:
    try:
        image = decode_image(data, MAX_PIXELS)
    except (UnreadableImage, ImageTooLarge) as error:
        assert error.status_code in (400, 413) and error.description
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert 0 < image.shape[0] * image.shape[1] <= MAX_PIXELS


@BOUNDED
@given(st.sampled_from(MAGIC), st.binary(max_size=600))
def test_any_bytes_after_a_magic_number_decode_or_get_a_typed_error(magic, tail):
    _decodes_or_refuses(magic + tail)


@BOUNDED
@given(
    st.sampled_from(["jpeg", "png"]),
    st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(10, 100_000),
)
def test_real_images_with_flipped_bytes_or_cut_short_decode_or_get_a_typed_error(fmt, flips, keep):
    data = bytearray(good_jpeg() if fmt == "jpeg" else good_png())
    for position, value in flips:
        data[position % len(data)] = value
    _decodes_or_refuses(bytes(data[:keep]))


@BOUNDED
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_any_claimed_png_size_is_refused_before_decoding_or_decoded(width, height):
    data = png_claiming(width, height)
    header = read_header(data)
    assert (header.width, header.height) == (width, height)
    _decodes_or_refuses(data)


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.lists(
        st.one_of(st.integers(-5, 5), st.sampled_from(NAMES), st.text(max_size=5)), max_size=4
    ),
)


@BOUNDED
@given(st.dictionaries(st.sampled_from([*KEYS, "cnof", "x"]), _VALUES, max_size=6))
def test_any_json_options_resolve_or_get_a_bad_option_naming_the_key(overrides):
    try:
        options = resolve(Options(), overrides, NAMES, len(NAMES))
    except BadOption as error:
        assert error.key in overrides and f"'{error.key}'" in error.description
        return
    assert 0 <= options.conf <= 1 and 0 <= options.iou <= 1 and math.isfinite(options.conf)
    assert 1 <= options.max_det <= 1000 and isinstance(options.agnostic, bool)
    assert options.classes is None or set(options.classes) <= {0, 1, 2}


@BOUNDED
@given(st.text(max_size=200))
def test_any_custom_attributes_header_parses_or_gets_a_bad_option(header):
    found = from_custom_attributes(header)
    assert set(found) <= set(KEYS)
    try:
        resolve(Options(), found, NAMES, len(NAMES))
    except BadOption as error:
        assert error.key in found


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@BOUNDED
@given(
    st.one_of(
        _JSON,
        st.fixed_dictionaries({"image": st.text(max_size=80)}),
        st.fixed_dictionaries({"image": st.binary(max_size=60).map(lambda b: b.hex())}),
    )
)
def test_any_json_document_gives_an_image_or_bad_json(document):
    try:
        data, options = _image_from_json(document)
    except BadJson as error:
        assert error.status_code == 400 and error.description
        return
    assert isinstance(data, bytes) and set(options) <= set(KEYS)


@BOUNDED
@given(st.text(max_size=300), st.integers(1, 50_000))
def test_any_body_text_parses_or_fails_with_value_error_only(text, depth):
    for candidate in (text, "[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        # ValueError: falcon answers 400 for it; a RecursionError would have been a 500
        with contextlib.suppress(ValueError):
            json.dumps(loads_json(candidate))
