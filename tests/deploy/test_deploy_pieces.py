"""The smaller contracts: invoke through sagemaker-runtime (Stubber) and through --url, the live
progress line, the state file, names and tags, the model archive, serverless and autoscale rules."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from botocore.response import StreamingBody

from deploy import artifacts, names, waiting
from deploy.errors import UserError
from deploy.state import StateFile
from tests.support.aws import IMAGE, ROOT, StubbedAws, state, write_state
from tests.support.server import free_port, local_server

PICTURE = ROOT / "samples" / "shapes" / "shapes-01.png"
ANSWER = {
    "detections": [
        {"box": [54.2, 151.0, 86.4, 183.1], "score": 0.9312, "class_id": 1, "label": "square"},
        {"box": [227.0, 268.5, 259.9, 300.0], "score": 0.8801, "class_id": 0, "label": "circle"},
    ],
    "image": {"width": 320, "height": 320},
    "model": "shapes-yolov7-tiny",
    "timing_ms": {"decode": 1.2, "preprocess": 0.8, "inference": 14.1, "postprocess": 0.4},
}


def streaming(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def write_endpoint_state(home, **endpoint) -> None:
    write_state(home, endpoint={"name": "yolov7-e", "model": "yolov7-model-x", **endpoint})


# --- invoke -----------------------------------------------------------------------------------


def test_invoke_sends_raw_bytes_and_thresholds_as_custom_attributes(moto, cli, stubbed, tmp_path):
    write_endpoint_state(tmp_path, instance_type="ml.c5.xlarge")
    body = PICTURE.read_bytes()
    runtime = stubbed.stub("sagemaker-runtime")
    expected = {
        "EndpointName": "yolov7-e",
        "Body": body,
        "ContentType": "image/png",
        "CustomAttributes": "conf=0.3,iou=0.5,max_det=100",
    }
    runtime.add_response(
        "invoke_endpoint",
        {
            "Body": streaming(json.dumps(ANSWER).encode()),
            "ContentType": "application/json",
            "CustomAttributes": "detections=2",
            "InvokedProductionVariant": "AllTraffic",
        },
        {**expected, "Accept": "application/json"},
    )
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64
    runtime.add_response(
        "invoke_endpoint",
        {"Body": streaming(jpeg), "ContentType": "image/jpeg"},
        {**expected, "Accept": "image/jpeg"},
    )
    saved = tmp_path / "pictures" / "out.jpg"
    result = cli(
        "invoke", PICTURE, "--conf", "0.3", "--iou", "0.5", "--max-det", "100", "--save", saved,
        aws=stubbed,
    )  # fmt: skip
    assert result.code == 0, result.err
    stubbed.verify()
    lines = result.out.splitlines()
    assert lines[0].split() == ["#", "label", "score", "x1", "y1", "x2", "y2"]
    assert lines[1].split() == ["1", "square", "0.931", "54.2", "151.0", "86.4", "183.1"]
    assert lines[3].startswith(
        "2 detections, 320x320 image, model shapes-yolov7-tiny, server 16.5 ms, round trip "
    )
    assert lines[3].endswith("from endpoint yolov7-e")
    assert saved.read_bytes() == jpeg


def test_invoke_json_prints_the_servers_answer(moto, cli, stubbed, tmp_path):
    write_endpoint_state(tmp_path)
    runtime = stubbed.stub("sagemaker-runtime")
    runtime.add_response(
        "invoke_endpoint",
        {"Body": streaming(json.dumps(ANSWER).encode()), "ContentType": "application/json"},
    )
    result = cli("invoke", PICTURE, "--json", aws=stubbed)
    assert result.code == 0 and json.loads(result.out) == ANSWER


def test_a_container_error_names_the_log_group(moto, cli, stubbed, tmp_path):
    write_endpoint_state(tmp_path)
    runtime = stubbed.stub("sagemaker-runtime")
    runtime.add_client_error(
        "invoke_endpoint",
        "ModelError",
        "Received client error (400) from primary with message "
        '"{"error": "cannot decode the image", "status": 400}".',
        http_status_code=424,
    )
    result = cli("invoke", PICTURE, aws=stubbed)
    assert result.code == 1
    line = result.error_line()
    assert "the container behind yolov7-e returned an error: Received client error (400)" in line
    assert "CloudWatch log group /aws/sagemaker/Endpoints/yolov7-e" in line


def test_invoke_rejects_bad_thresholds_before_sending(moto, cli, tmp_path):
    write_endpoint_state(tmp_path)
    result = cli("invoke", PICTURE, "--conf", "1.5")
    assert result.code == 2
    assert result.error_line() == "error: --conf must be between 0 and 1."


@pytest.fixture(scope="module")
def local_serve(shapes_onnx):
    """`python -m serve` with the exported model on loopback: the --url target."""
    with local_server(shapes_onnx) as server:
        yield server.url


def test_invoke_url_reports_the_servers_400_as_an_input_error(moto, cli, local_serve, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    result = cli("invoke", broken, "--url", local_serve)
    assert result.code == 2
    line = result.error_line()
    assert line.startswith(f"error: {local_serve}/invocations answered HTTP 400: ")


def test_invoke_url_that_nobody_listens_on(moto, cli):
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("invoke", PICTURE, "--url", url)
    assert result.code == 1
    assert result.error_line().startswith(f"error: could not reach {url}/invocations: ")


def test_invoke_url_table_against_our_server(moto, cli, local_serve):
    result = cli("invoke", PICTURE, "--url", local_serve + "/", "--conf", "0.5")
    assert result.code == 0, result.err
    assert (
        "model shapes-yolov7-tiny" in result.out and f"from {local_serve}/invocations" in result.out
    )


# --- the progress line ------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def endpoint(status: str) -> dict:
    return {
        "EndpointName": "e",
        "EndpointArn": "arn:aws:sagemaker:eu-west-1:1:endpoint/e",
        "EndpointStatus": status,
        "CreationTime": 0,
        "LastModifiedTime": 0,
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "CurrentInstanceCount": 0, "DesiredInstanceCount": 1}
        ],
    }


def test_the_progress_line_is_rewritten_in_place_on_a_terminal():
    aws = StubbedAws()
    stub = aws.stub("sagemaker")
    for status in ("Creating", "Creating", "InService"):
        stub.add_response("describe_endpoint", endpoint(status), {"EndpointName": "e"})
    screen, clock = Terminal(), FakeClock()
    result = waiting.wait_for(
        aws.client("sagemaker"),
        "endpoint_in_service",
        {"EndpointName": "e"},
        label="endpoint e",
        status_of=lambda r: r["EndpointStatus"],
        poll=3,
        progress=waiting.ProgressLine(screen),
        clock=clock,
        sleep=clock.sleep,
    )
    assert result.state == "success" and result.seconds == 6
    frames = screen.getvalue().split("\r\x1b[2K")
    assert frames[1] == "endpoint e: Creating  [0:00]"
    assert "endpoint e: Creating  [0:02]" in frames  # ticks between polls
    assert frames[-1] == "endpoint e: InService  [0:06]\n"


def test_waiting_gives_up_after_the_timeout():
    aws = StubbedAws()
    stub = aws.stub("sagemaker")
    for _ in range(3):
        stub.add_response("describe_endpoint", endpoint("Creating"))
    clock = FakeClock()
    with pytest.raises(waiting.AwsError, match=r"gave up waiting for endpoint e after 0:10"):
        waiting.wait_for(
            aws.client("sagemaker"),
            "endpoint_in_service",
            {"EndpointName": "e"},
            label="endpoint e",
            status_of=lambda r: r["EndpointStatus"],
            poll=5,
            timeout=10,
            progress=waiting.ProgressLine(io.StringIO()),
            clock=clock,
            sleep=clock.sleep,
        )


def test_the_waiter_budget_comes_from_botocore():
    aws = StubbedAws()
    config = aws.client("sagemaker").get_waiter("endpoint_in_service").config
    assert (config.delay, config.max_attempts) == (30, 120)  # what wait_for defaults to


# --- state, names, archive, rules ----------------------------------------------------------------


def test_the_state_file_is_written_atomically_with_a_gitignore(tmp_path):
    store = StateFile(tmp_path / ".deploy" / "state.json")
    data = {"version": 1, "tool": "yolov7-sagemaker-deploy", "resources": [], "x": "y"}
    store.save(data)
    assert store.load()["x"] == "y"
    assert (tmp_path / ".deploy" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert [p.name for p in (tmp_path / ".deploy").iterdir() if p.name.startswith(".state-")] == []


def test_a_state_file_of_another_tool_is_refused(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "tool": "terraform"}))
    with pytest.raises(UserError, match="is not a yolov7-sagemaker-deploy state file"):
        StateFile(path).load()


def test_names_carry_the_prefix_and_a_utc_stamp():
    from datetime import UTC, datetime

    when = names.stamp(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert when == "20300102-030405"
    found = names.deployment("yolov7", when)
    assert (found.model, found.config, found.endpoint) == (
        "yolov7-model-20300102-030405",
        "yolov7-config-20300102-030405",
        "yolov7-20300102-030405",
    )
    with pytest.raises(UserError):
        names.check_prefix("bad_prefix!")


def test_our_tag_wins_over_a_user_tag_of_the_same_key():
    tags = names.tags_for("yolov7", names.parse_tags(["managed-by=me", "team=vision"]))
    assert tags["managed-by"] == "yolov7-sagemaker-deploy" and tags["team"] == "vision"
    with pytest.raises(UserError):
        names.parse_tags(["aws:reserved=x"])


def test_the_archive_holds_only_the_onnx_at_its_root(tmp_path):
    onnx = tmp_path / "detector.onnx"
    onnx.write_bytes(b"\x08\x07" * 100)
    archive = artifacts.build_archive(onnx, tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        (member,) = tar.getmembers()
    assert (member.name, member.size, member.uid, member.mode) == ("detector.onnx", 200, 0, 0o644)


def test_package_refuses_what_is_not_an_onnx(moto, cli, tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"x")
    result = cli("package", tmp_path / "weights.pt")
    assert result.code == 2
    assert result.error_line().startswith("error: ")
    assert "is not an .onnx file" in result.err


def test_serverless_up_has_no_instances_and_cannot_autoscale(moto, cli, tmp_path):
    made = cli(
        "up", "--image", IMAGE, "--serverless-memory", "2048", "--serverless-concurrency", "4",
        "--poll", "0",
    )  # fmt: skip
    assert made.code == 0, made.err
    recorded = state(tmp_path)["endpoint"]
    config = moto.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=recorded["config"]
    )
    variant = config["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 4}
    assert "InstanceType" not in variant
    assert "ContainerStartupHealthCheckTimeoutInSeconds" not in variant
    refused = cli("autoscale", "--min", "1", "--max", "2")
    assert refused.code == 2
    assert "a serverless endpoint scales by itself" in refused.error_line()


def test_serverless_memory_outside_the_allowed_steps_is_refused(moto, cli):
    result = cli("up", "--image", IMAGE, "--serverless-memory", "1500")
    assert result.code == 2
    assert "--serverless-memory 1500 is not allowed" in result.error_line()


def test_a_second_up_in_the_same_state_is_refused(moto, cli):
    assert cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0").code == 0
    again = cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge")
    assert again.code == 2
    assert "run `update` to change it, `down` to remove it" in again.error_line().lower()
