"""`capture --out DIR`: a record's eventId (text anyone who can write the capture prefix chooses)
never becomes a path. Records are put into moto's S3 as SageMaker writes them; the CLI runs against
moto's server; the test then looks at every file under the test's folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deploy.capture_files import SLUG_MAX, file_name
from deploy.output import printable
from tests.deploy.test_deploy_observe import BUCKET, capture_bucket, capture_record, up
from tests.support.aws import state

__all__ = ["capture_bucket"]  # the fixture, used by name

PICTURE = b"\x89PNG\r\n\x1a\n-not-really-a-png"


def put_records(moto, tmp_path: Path, event_ids: list[str]) -> None:
    endpoint = state(tmp_path)["endpoint"]["name"]
    key = f"captures/{endpoint}/AllTraffic/2030/01/01/00/00-01-000-ab12.jsonl"
    body = "\n".join(capture_record(PICTURE, {"detections": []}, i) for i in event_ids)
    moto.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body.encode())


def files_under(root: Path) -> set[Path]:
    return {Path(folder, name) for folder, _, names in os.walk(root) for name in names}


def test_hostile_event_ids_never_leave_the_out_folder(moto, cli, tmp_path, capture_bucket):
    up(cli, "--capture", capture_bucket)
    absolute = tmp_path / "escaped-abs"  # the real /tmp is not written by a test
    hostile = [
        "../escaped-rel",
        str(absolute),
        "",
        "x" * 5000,
        "\x1b[31mred\x1b[0m",
        "line\nbreak",
        "nul\x00byte",
        "..",
        ".hidden",
        "dup",
        "dup",
    ]
    put_records(moto, tmp_path, hostile)
    before = files_under(tmp_path)
    out = tmp_path / "work" / "out"

    shown = cli("capture", "--last", str(len(hostile)), "--out", out)

    assert shown.code == 0, shown.err
    written = files_under(tmp_path) - before
    assert {p.parent for p in written} == {out}  # every new file directly inside --out
    assert len(written) == len(hostile)  # each record saved, the duplicate too: names unique
    assert not absolute.with_suffix(".png").exists() and not absolute.exists()
    assert not (tmp_path / "work" / "escaped-rel.png").exists()
    for path in written:
        assert path.read_bytes() == PICTURE
        assert len(path.name) <= SLUG_MAX + 32 and path.name.isascii()
        assert not path.name.startswith(".") and path.name.endswith(".png")
        assert all(c.isalnum() or c in "._-" for c in path.name)
    # the listing still names each event, escaped: no raw escape sequence, newline or NUL
    assert "\x1b" not in shown.out and "\x00" not in shown.out
    assert "event \\x1b[31mred\\x1b[0m  image/png" in shown.out
    assert "event line\\nbreak  image/png" in shown.out
    assert f"event {'x' * 120}... (5000 characters)" in shown.out
    assert shown.out.count(" -> saved ") == len(hostile)


def test_json_listing_keeps_the_id_and_names_the_file_the_tool_made(
    moto, cli, tmp_path, capture_bucket
):
    up(cli, "--capture", capture_bucket)
    put_records(moto, tmp_path, ["/etc/passwd", "ok-1"])
    out = tmp_path / "out"
    shown = cli("capture", "--last", "2", "--out", out, "--json")
    assert shown.code == 0, shown.err
    rows = [json.loads(line) for line in shown.out.splitlines()]
    assert [r["event_id"] for r in rows] == ["ok-1", "/etc/passwd"]
    assert [Path(r["saved"]) for r in rows] == [
        out.resolve() / file_name("ok-1", "image/png"),
        out.resolve() / file_name("/etc/passwd", "image/png"),
    ]


def test_a_symlink_at_a_file_name_is_refused_not_followed(moto, cli, tmp_path, capture_bucket):
    up(cli, "--capture", capture_bucket)
    put_records(moto, tmp_path, ["planted"])
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / file_name("planted", "image/png")).symlink_to(victim)
    shown = cli("capture", "--last", "1", "--out", out)
    assert shown.code == 2
    assert "is a symbolic link; capture does not write through one" in shown.error_line()
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize(
    ("event_id", "content_type", "expected"),
    [
        ("event-1", "image/png", "event-1-"),
        ("../escaped", "image/jpeg", "escaped-"),
        ("", "image/png", "record-"),
        ("..", "application/octet-stream", "record-"),
        ("a/b\\c d", "image/jpeg", "a_b_c_d-"),
    ],
)
def test_file_names_are_made_from_a_slug_and_a_digest(event_id, content_type, expected):
    name = file_name(event_id, content_type)
    assert name.startswith(expected) and "/" not in name and "\\" not in name
    assert name.endswith({"image/png": ".png", "image/jpeg": ".jpg"}.get(content_type, ".bin"))
    assert file_name(event_id, content_type) == name  # the same record lands on the same file
    assert file_name(event_id + "?", content_type) != name  # the digest tells ids apart


def test_printable_escapes_control_and_bidi_characters():
    assert printable("a\x1b[2Jb\r\n\x00\u202e") == "a\\x1b[2Jb\\r\\n\\x00\\u202e"
    assert printable("café") == "café"
