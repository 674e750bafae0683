"""Video clips over HTTP, against `python -m serve` on the bundled shapes model: the true boxes of
moving shapes, each frame equal to that frame sent as a PNG, the frame options, the three answer
types, the limits, and the odd clips (each answered, never a 5xx, the server still serving)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from demo.evaluate import Tally, match
from serve.detector import Detections
from serve.errors import UnencodableClip
from serve.video import container
from serve.video_render import AnnotatedClip
from tests.support.images import encode
from tests.support.server import ServerProcess, local_server
from tests.support.video import (
    audio_only_clip,
    corrupt,
    cut,
    moving_shapes,
    noise_clip,
    read_frames,
    rotated,
    variable_rate_clip,
    write_clip,
    zero_frames,
)

ATTRS = "X_Amzn_SageMaker_Custom_Attributes"
pytestmark = pytest.mark.slow  # exports the bundled checkpoint; each clip is dozens of inferences


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    """One server on the shapes model, its private directory in a folder the tests can see."""
    tmpdir = tmp_path_factory.mktemp("serve-tmp")
    with local_server(exported["raw"], {"SERVE_TMPDIR": str(tmpdir)}) as srv:
        srv.tmpdir = tmpdir  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[list[dict]]]:
    """30 frames of moving shapes at 30 fps (MP4), and each frame's true boxes."""
    pictures, truth = moving_shapes(30, seed=1)
    return write_clip(tmp_path_factory.mktemp("clip") / "shapes.mp4", pictures), truth


def frames_of(answer) -> list[int]:
    return [frame["frame"] for frame in answer.json()["frames"]]


def test_the_frames_of_a_clip_find_the_true_moving_shapes(server, tmp_path):
    total = Tally()
    for seed in (11, 12):
        pictures, truth = moving_shapes(45, seed=seed)
        body = write_clip(tmp_path / f"clip{seed}.mp4", pictures).read_bytes()
        answer = server.invoke(body, "video/mp4")
        assert answer.status == 200, answer.body[:300]
        document = answer.json()
        assert document["video"] == {
            "width": 320,
            "height": 320,
            "fps": 30.0,
            "frames": 45,
            "duration": 1.5,
        }
        assert document["model"] == "shapes-yolov7-tiny" and "incomplete" not in document
        assert [f["frame"] for f in document["frames"]] == list(range(45))
        assert [f["time"] for f in document["frames"]] == [round(k / 30, 3) for k in range(45)]
        for frame, boxes in zip(document["frames"], truth, strict=True):
            total.add(match(frame["detections"], boxes, min_iou=0.5))
        custom = answer.headers["x-amzn-sagemaker-custom-attributes"]
        assert custom.startswith("frames=45,detections=")
    print(f"precision {total.precision:.3f} recall {total.recall:.3f}")
    assert total.true_positives + total.false_negatives > 150
    # the still-image figures of tests/demo/test_accuracy.py
    assert total.precision >= 0.95 and total.recall >= 0.95


def test_each_frame_equals_that_frame_sent_as_a_png(server, clip):
    path, _ = clip
    answer = server.invoke(
        path.read_bytes(), "video/mp4", **{ATTRS: "frame_stride=4,conf=0.1,max_det=50"}
    )
    assert answer.status == 200
    frames = answer.json()["frames"]
    decoded = read_frames(path)
    assert [f["frame"] for f in frames] == list(range(0, 30, 4))
    for frame in frames:
        png = encode(decoded[frame["frame"]], ".png")
        still = server.invoke(png, "image/png", **{ATTRS: "conf=0.1,max_det=50"}).json()
        _assert_same(frame["detections"], still["detections"])


def _assert_same(video: list[dict], image: list[dict]) -> None:
    assert [d["class_id"] for d in video] == [d["class_id"] for d in image]
    for a, b in zip(video, image, strict=True):
        assert np.abs(np.array(a["box"]) - np.array(b["box"])).max() <= 1.0
        assert abs(a["score"] - b["score"]) <= 1e-3


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ("frame_stride=7", [0, 7, 14, 21, 28]),
        ("fps=5", [0, 6, 12, 18, 24]),
        ("max_frames=3", [0, 1, 2]),
        ("start=0.5,end=0.7", [15, 16, 17, 18, 19, 20]),
        ("start=0.2,frame_stride=10,max_frames=1", [10]),
        ("start=5", []),
    ],
)
def test_frame_options_select_the_frames(server, clip, attributes, expected):
    answer = server.invoke(clip[0].read_bytes(), "video/mp4", **{ATTRS: attributes})
    assert answer.status == 200, answer.body[:300]
    assert frames_of(answer) == expected


def test_a_clip_in_json_answers_as_the_same_clip_sent_as_bytes(server, clip):
    body = clip[0].read_bytes()
    raw = server.invoke(body, "video/mp4", **{ATTRS: "frame_stride=7,conf=0.2"}).json()
    document = {"video": base64.b64encode(body).decode(), "frame_stride": 7, "conf": 0.2}
    answer = server.invoke(json.dumps(document).encode(), "application/json")
    assert answer.status == 200, answer.body[:300]
    assert frames_of(answer) == [0, 7, 14, 21, 28]
    for frame, same in zip(answer.json()["frames"], raw["frames"], strict=True):
        _assert_same(frame["detections"], same["detections"])
    # the header's options, then the body's; the other answer types as for bytes
    lines = server.invoke(
        json.dumps({"video": document["video"], "max_frames": 2}).encode(),
        "application/json",
        Accept="application/jsonlines",
        **{ATTRS: "frame_stride=3"},
    )
    assert lines.status == 200 and lines.headers["content-type"].startswith("application/jsonl")
    frames = [json.loads(line) for line in lines.body.decode().splitlines()][:-1]
    assert [frame["frame"] for frame in frames] == [0, 3]


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"video": ""}, "'video' must be a non-empty base64 string"),
        ({"video": "%%%"}, "'video' is not valid base64"),
        ({"video": "AAAA", "speed": 2}, "unknown key 'speed'"),
        ({"video": "AAAA", "frame_stride": 0}, "frame_stride"),
    ],
)
def test_a_bad_clip_in_json_is_a_json_400(server, document, words):
    answer = server.invoke(json.dumps(document).encode(), "application/json")
    assert answer.status == 400, answer.body[:300]
    assert words in answer.json()["error"]


def test_a_still_image_in_json_as_a_video_is_a_json_400(server):
    png = encode(np.full((64, 64, 3), 200, np.uint8), ".png")
    document = {"video": base64.b64encode(png).decode()}
    answer = server.invoke(json.dumps(document).encode(), "application/json")
    assert answer.status == 400, answer.body[:300]
    assert answer.json()["error"]
    assert server.request("GET", "/ping").status == 200


def test_detection_options_apply_to_every_frame(server, clip):
    body = clip[0].read_bytes()
    everything = server.invoke(body, "video/mp4", **{ATTRS: "max_frames=5"}).json()["frames"]
    found = {d["class_id"] for frame in everything for d in frame["detections"]}
    keep = min(found)
    only = server.invoke(body, "video/mp4", **{ATTRS: f"max_frames=5,classes={keep},max_det=1"})
    for frame, full in zip(only.json()["frames"], everything, strict=True):
        wanted = [d for d in full["detections"] if d["class_id"] == keep][:1]
        assert frame["detections"] == wanted


def test_jsonlines_answers_one_line_per_frame_then_a_summary(server, clip):
    body = clip[0].read_bytes()
    lines = server.invoke(body, "video/mp4", Accept="application/jsonlines")
    assert lines.status == 200
    assert lines.headers["content-type"].startswith("application/jsonlines")
    records = [json.loads(line) for line in lines.body.decode().splitlines()]
    whole = server.invoke(body, "video/mp4").json()
    assert records[:-1] == whole["frames"]
    assert records[-1]["summary"]["video"] == whole["video"]


def test_accept_video_mp4_answers_the_clip_with_the_boxes_drawn(server, clip, tmp_path):
    answer = server.invoke(clip[0].read_bytes(), "video/mp4", Accept="video/mp4")
    assert answer.status == 200
    assert answer.headers["content-type"] == "video/mp4"
    assert answer.headers["x-amzn-sagemaker-custom-attributes"].startswith("frames=30,")
    drawn = read_frames(write_bytes(tmp_path / "drawn.mp4", answer.body))
    source = read_frames(clip[0])
    assert len(drawn) == 30 and drawn[0].shape == source[0].shape
    # boxes and labels change the pictures: far more than the re-encoding does
    changed = [
        np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 100
        for a, b in zip(drawn, source, strict=True)
    ]
    assert all(mask.sum() > 200 for mask in changed)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("content_type", [None, "application/octet-stream"])
def test_a_clip_without_a_video_type_is_told_from_its_bytes(server, clip, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    answer = server.request("POST", "/invocations", clip[0].read_bytes(), headers)
    assert answer.status == 200 and len(answer.json()["frames"]) == 30
    png = encode(read_frames(clip[0])[0], ".png")  # a photo as octet-stream is still a photo
    still = server.invoke(png, "application/octet-stream")
    assert still.status == 200 and "detections" in still.json()


def test_variable_frame_rate_gives_each_frame_its_own_time(server, tmp_path):
    pictures, _ = moving_shapes(6, seed=3)
    slots = [0, 1, 2, 15, 16, 36]  # in 1/30 s: the encoder's clock
    times = [round(k * 1000 / 30) for k in slots]
    body = variable_rate_clip(tmp_path / "vfr.mkv", pictures, times).read_bytes()
    answer = server.invoke(body, "video/x-matroska")
    assert answer.status == 200, answer.body[:300]
    document = answer.json()
    assert [f["time"] for f in document["frames"]] == pytest.approx(
        [k / 30 for k in slots], abs=0.002
    )
    assert document["video"]["frames"] == 6 and "incomplete" not in document
    sampled = server.invoke(body, "video/x-matroska", **{ATTRS: "fps=2"})
    assert frames_of(sampled) == [0, 3, 5]  # one per half second of video time


def test_rotation_metadata_is_applied_to_the_frames(server, tmp_path):
    pictures, _ = moving_shapes(8, width=320, height=240, seed=4, lanes=2)
    upright = rotated(write_clip(tmp_path / "wide.mp4", pictures).read_bytes())
    path = write_bytes(tmp_path / "upright.mp4", upright)
    answer = server.invoke(upright, "video/mp4")
    assert answer.status == 200
    document = answer.json()
    assert (document["video"]["width"], document["video"]["height"]) == (240, 320)
    frames = read_frames(path)
    assert frames[0].shape[:2] == (320, 240)  # OpenCV turns them as a player shows them
    for frame in document["frames"][:3]:
        png = encode(frames[frame["frame"]], ".png")
        _assert_same(frame["detections"], server.invoke(png, "image/png").json()["detections"])


def test_a_clip_cut_short_answers_the_frames_so_far(server, tmp_path):
    pictures, _ = moving_shapes(90, seed=5)
    whole = write_clip(tmp_path / "long.mkv", pictures).read_bytes()
    answer = server.invoke(cut(whole, 0.5), "video/x-matroska")
    assert answer.status == 200, answer.body[:300]
    document = answer.json()
    assert document["incomplete"] is True and "truncated" in document["reason"]
    assert 0 < len(document["frames"]) < 90
    assert frames_of(answer) == list(range(len(document["frames"])))


def test_a_corrupt_stretch_ends_the_frames_with_the_reason(server, tmp_path):
    # zeroed bytes amid frames of noise: the decoder stops there (frame 34 of 90)
    noise = noise_clip(tmp_path / "noise.mp4", 90, 64, 48).read_bytes()
    answer = server.invoke(corrupt(noise, 0.5, 5000), "video/mp4", **{ATTRS: "conf=0.9"})
    assert answer.status == 200, answer.body[:300]
    document = answer.json()
    assert document["incomplete"] is True and "truncated or corrupt" in document["reason"]
    assert frames_of(answer) == list(range(34))


def test_damage_the_decoder_conceals_still_gives_every_frame(server, tmp_path):
    pictures, _ = moving_shapes(90, seed=6)
    whole = write_clip(tmp_path / "long.mp4", pictures).read_bytes()
    answer = server.invoke(corrupt(whole, 0.4, 20000), "video/mp4", **{ATTRS: "frame_stride=9"})
    assert answer.status == 200, answer.body[:300]
    document = answer.json()
    assert "incomplete" not in document and frames_of(answer) == list(range(0, 90, 9))


@pytest.mark.parametrize(
    ("name", "content_type", "words"),
    [
        ("audio only", "video/mp4", "no video track"),
        ("zero frames", "video/x-matroska", "clip"),
        ("still image", "video/mp4", "PNG image"),
        ("MP4 cut short", "video/mp4", "truncated"),
        ("text", "video/webm", "not a supported video"),
    ],
)
def test_a_clip_with_nothing_to_decode_is_a_json_400(
    server, clip, tmp_path, name, content_type, words
):
    pictures, _ = moving_shapes(10, seed=2)
    bodies = {
        "audio only": lambda: audio_only_clip(tmp_path / "a.mp4").read_bytes(),
        "zero frames": lambda: zero_frames(write_clip(tmp_path / "z.mkv", pictures).read_bytes()),
        "still image": lambda: encode(pictures[0], ".png"),
        "MP4 cut short": lambda: cut(clip[0].read_bytes()),
        "text": lambda: b"not a video at all " * 20,
    }
    answer = server.invoke(bodies[name](), content_type)
    assert answer.status == 400, answer.body[:300]
    assert answer.headers["content-type"].startswith("application/json")
    assert words in answer.json()["error"]
    assert server.invoke(clip[0].read_bytes(), "video/mp4", **{ATTRS: "max_frames=1"}).status == 200


@pytest.mark.parametrize(
    ("attributes", "key"),
    [
        ("frame_stride=0", "frame_stride"),
        ("frame_stride=1.5", "frame_stride"),
        ("fps=-1", "fps"),
        ("max_frames=none", "max_frames"),
        ("start=-1", "start"),
        ("start=2,end=1", "end"),
        ("conf=2", "conf"),
    ],
)
def test_a_bad_frame_option_is_a_400_naming_it(server, clip, attributes, key):
    answer = server.invoke(clip[0].read_bytes(), "video/mp4", **{ATTRS: attributes})
    assert answer.status == 400
    assert f"'{key}'" in answer.json()["error"]


def test_accept_that_no_video_answer_fits_is_a_406(server, clip):
    answer = server.invoke(clip[0].read_bytes(), "video/mp4", Accept="image/jpeg")
    assert answer.status == 406 and "video/mp4" in answer.json()["error"]


def test_no_clip_is_left_on_disk(server, clip):
    server.invoke(clip[0].read_bytes(), "video/mp4", Accept="video/mp4")
    server.invoke(cut(clip[0].read_bytes()), "video/mp4")
    private = [p for p in server.tmpdir.iterdir() if p.name.startswith("serve-")]
    assert len(private) == 1 and list(private[0].iterdir()) == []


def test_the_frame_cap_refuses_a_clip_that_selects_more(exported, clip, tmp_path):
    body = clip[0].read_bytes()
    with local_server(exported["raw"], {"SERVE_VIDEO_MAX_FRAMES": "10"}) as server:
        refused = server.invoke(body, "video/mp4")
        assert refused.status == 413
        assert "SERVE_VIDEO_MAX_FRAMES" in refused.json()["error"]
        assert "frame_stride" in refused.json()["error"]
        assert (
            len(server.invoke(body, "video/mp4", **{ATTRS: "frame_stride=3"}).json()["frames"])
            == 10
        )


def test_a_clip_too_slow_for_a_real_time_request_is_refused_naming_async(exported, tmp_path):
    pictures, _ = moving_shapes(60, seed=8)
    body = write_clip(tmp_path / "long.mp4", pictures).read_bytes()
    with local_server(exported["raw"], {"SERVE_VIDEO_SECONDS": "0.3"}) as server:
        for _ in range(2):  # measured on its first frames, then known before any frame
            refused = server.invoke(body, "video/mp4")
            assert refused.status == 413, refused.body[:300]
            error = refused.json()["error"]
            assert "--async" in error and "ms per frame" in error
        assert server.invoke(body, "video/mp4", **{ATTRS: "max_frames=2"}).status == 200


def test_the_body_limit_for_video_is_its_own_and_big_clips_are_spooled(exported, tmp_path):
    pictures, _ = moving_shapes(20, seed=9)
    body = write_clip(tmp_path / "clip.avi", pictures).read_bytes()  # MJPEG: large
    assert len(body) > 200_000
    env = {"MAX_BODY_BYTES": "50000", "MAX_VIDEO_BYTES": str(len(body) + 1)}
    with local_server(exported["raw"], env) as server:
        answer = server.invoke(body, "video/x-msvideo")
        assert answer.status == 200 and len(answer.json()["frames"]) == 20
        photo = encode(pictures[0], ".png")
        assert server.invoke(photo + b"\0" * 60_000, "image/png").status == 413
    with local_server(exported["raw"], {"MAX_VIDEO_BYTES": "100000"}) as server:
        refused = server.invoke(body, "video/x-msvideo")
        assert refused.status == 413 and "100000" in refused.json()["error"]


def test_many_odd_clips_in_a_row_leave_the_server_serving(server: ServerProcess, clip, tmp_path):
    bodies = [cut(clip[0].read_bytes(), share / 10) for share in range(1, 10)]
    for body in bodies:
        assert server.invoke(body, "video/mp4").status in (200, 400)
    assert server.request("GET", "/ping").status == 200


def test_a_frame_size_the_encoder_refuses_is_a_400_not_a_500(tmp_path):
    clip = AnnotatedClip(tmp_path / "out.mp4", 30.0, str)
    empty = Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    with pytest.raises(UnencodableClip) as refused:
        clip.add(np.zeros((1, 1, 3), np.uint8), empty)
    assert refused.value.status_code == 400 and "application/json" in refused.value.description
    clip.close()


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x00\x00\x00\x18ftypisom", "MP4"),
        (b"\x00\x00\x00\x14ftypqt  ", "MP4"),
        (b"RIFF\x00\x10\x00\x00AVI LIST", "AVI"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "Matroska"),
        (b"\x00\x00\x00\x1cftypheic", None),  # a HEIC photo
        (b"\x00\x00\x00\x1cftypavif", None),  # an AVIF photo
        (b"RIFF\x00\x10\x00\x00WEBPVP8 ", None),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", None),
    ],
)
def test_containers_are_told_from_their_first_bytes(head, kind):
    assert container(head) == kind
