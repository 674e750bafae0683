"""bench.video's clip: 1080p at 30 fps, the frames it says, and its JPEG frames (the image load)."""

from __future__ import annotations

import cv2
import pytest

pytest.importorskip("psutil", reason="benchmark dependencies: requirements-bench.txt")

from bench.video import FPS, HEIGHT, WIDTH, photos, write_clip
from tests.support.video import read_frames


def test_the_generated_clip_is_1080p_30fps_with_moving_content(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", 0.2)
    capture = cv2.VideoCapture(str(clip))
    assert capture.get(cv2.CAP_PROP_FPS) == FPS
    capture.release()
    frames = read_frames(clip)
    assert len(frames) == 6 and frames[0].shape == (HEIGHT, WIDTH, 3)
    assert (cv2.absdiff(frames[0], frames[5]) > 60).sum() > 1000  # the shapes moved
    jpegs = photos(clip, tmp_path, count=2)
    assert [cv2.imread(str(p)).shape for p in jpegs] == [(HEIGHT, WIDTH, 3)] * 2
