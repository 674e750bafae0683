"""S3 buckets pinned to our account, against moto's server.

moto does not check ExpectedBucketOwner, so a botocore handler on the tool's own S3 client records
the parameters of every S3 call in a real run of package, up --async, invoke --async, transform,
capture, status and down, and each call whose API takes ExpectedBucketOwner must carry moto's
account. `package`'s bucket is checked as moto holds it, and a failure injected at each setup step
(a botocore handler answering 403, or Ctrl-C) leaves no bucket behind."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest
from botocore.stub import Stubber

from deploy import preflight
from deploy.aws import Aws
from deploy.context import Context
from deploy.errors import UserError
from deploy.state import StateFile
from tests.support.async_sagemaker import AsyncSageMaker
from tests.support.aws import ACCOUNT, IMAGE, REGION, TAG, not_in_policy, state

BUCKET = f"yolov7-sagemaker-{ACCOUNT}-{REGION}"  # package's default for the prefix "yolov7"
PHOTOS = "yolov7-owner-photos"
OWNER = "ExpectedBucketOwner"
ANSWER = {"image": {"width": 320, "height": 320}, "detections": []}


@pytest.fixture
def onnx(tmp_path):
    path = tmp_path / "detector.onnx"
    path.write_bytes(b"\x08\x07" * 4096)  # package checks the name and size, not the graph
    return path


@pytest.fixture
def s3_events(monkeypatch):
    """register(event, handler): a botocore handler on every S3 client the tool makes."""
    handlers: list[tuple[str, object]] = []
    real = Aws.client

    def client(self, service, region=None):
        made = real(self, service, region)
        if service == "s3":
            for event, handler in handlers:
                made.meta.events.register(event, handler, unique_id=f"test-{event}-{id(handler)}")
        return made

    monkeypatch.setattr(Aws, "client", client)
    return lambda event, handler: handlers.append((event, handler))


@pytest.fixture
def s3_calls(s3_events) -> list[tuple[str, dict, bool]]:
    """(operation, params, whether its API takes ExpectedBucketOwner) of each S3 call."""
    calls: list[tuple[str, dict, bool]] = []

    def record(params, model, **_):
        takes = OWNER in (model.input_shape.members if model.input_shape else {})
        calls.append((model.name, dict(params), takes))

    s3_events("before-parameter-build.s3", record)
    return calls


def answer_at_once(monkeypatch) -> None:
    """SageMaker's async part writes a canned answer at once (no container to run)."""

    def process(self, request):
        bucket, _, key = request["output"][len("s3://") :].partition("/")
        body = json.dumps(ANSWER).encode()
        self.emulator.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
        request["status"] = 200

    monkeypatch.setattr(AsyncSageMaker, "_process", process)


def test_every_s3_call_names_our_account_as_the_bucket_owner(
    moto, cli, onnx, s3_calls, api_calls, monkeypatch, tmp_path
):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=PHOTOS, CreateBucketConfiguration={"LocationConstraint": REGION})
    sagemaker = AsyncSageMaker(moto, container_url="http://unused").install(monkeypatch)
    answer_at_once(monkeypatch)

    assert cli("package", onnx).code == 0
    packaged = state(tmp_path)["model_data"]
    other = f"{packaged['key']}.copy.tar.gz"  # not the recorded one: the preflight HEADs it
    s3.copy_object(Bucket=BUCKET, Key=other, CopySource={"Bucket": BUCKET, "Key": packaged["key"]})
    up = cli(
        *("up", "--async", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0"),
        *("--output", f"s3://{PHOTOS}/a/output", "--model-data", f"s3://{BUCKET}/{other}"),
        *("--capture", f"s3://{PHOTOS}/captures"),
    )
    assert up.code == 0, up.err
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff" + b"\x00" * 100)
    sent = cli("invoke", "--async", photo, "--json", "--poll", "0.05", "--timeout", "30")
    assert sent.code == 0, sent.err
    assert json.loads(sent.out) == ANSWER and len(sagemaker.requests) == 1
    batch = cli("transform", "--content-type", "image/jpeg", "--poll", "0")
    assert batch.code == 0, batch.err
    endpoint = state(tmp_path)["endpoint"]["name"]
    record = json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "image/jpeg",
                    "mode": "INPUT",
                    "data": base64.b64encode(photo.read_bytes()).decode(),
                    "encoding": "BASE64",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": json.dumps(ANSWER),
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {"eventId": "e1", "inferenceTime": "2030-01-01T00:00:01Z"},
            "eventVersion": "0",
        }
    )
    s3.put_object(Bucket=PHOTOS, Key=f"captures/{endpoint}/AllTraffic/2030/x.jsonl", Body=record)
    shown = cli("capture", "--last", "1", "--out", tmp_path / "seen")
    assert shown.code == 0, shown.err
    assert cli("status").code == 0
    gone = cli("down", "--delete-model-data", "--poll", "0")
    assert gone.code == 0, gone.err

    operations = {name for name, _, _ in s3_calls}
    assert {"HeadBucket", "CreateBucket", "PutBucketPolicy", "PutObject", "HeadObject"} <= (
        operations
    )
    assert {"GetObject", "ListObjectsV2", "GetObjectTagging", "DeleteObject"} <= operations
    assert len(s3_calls) >= 20, s3_calls  # not vacuous: the handler saw the runs
    for name, params, takes in s3_calls:
        if takes:
            assert params.get(OWNER) == ACCOUNT, (name, params)
        else:
            assert name == "CreateBucket", name  # the one call on a bucket not yet anyone's
    assert not_in_policy(api_calls) == []


def test_package_makes_a_private_tls_only_encrypted_tagged_bucket(
    moto, cli, onnx, api_calls, tmp_path
):
    made = cli("package", onnx)
    assert made.code == 0, made.err
    assert f"created S3 bucket {BUCKET}" in made.err
    s3 = moto.client("s3")
    (statement,) = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    assert statement["Effect"] == "Deny" and statement["Action"] == "s3:*"
    assert statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(statement["Resource"]) == {f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"}
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"),
        True,
    )
    assert TAG in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]
    (rule,) = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    (ownership,) = s3.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]["Rules"]
    assert ownership == {"ObjectOwnership": "BucketOwnerEnforced"}
    assert state(tmp_path)["model_data"]["bucket_created"] is True
    assert not_in_policy(api_calls) == []

    again = cli("package", onnx)  # the bucket is ours now: used as it is
    assert again.code == 0, again.err
    assert "created S3 bucket" not in again.err
    assert state(tmp_path)["model_data"]["bucket_created"] is False


def denied(**_):
    """What S3 answers a request that IAM or an SCP refuses."""
    http = SimpleNamespace(status_code=403, headers={}, content=b"", raw=None)
    error = {"Code": "AccessDenied", "Message": "Access Denied"}
    return http, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 403}}


def interrupted(**_):
    raise KeyboardInterrupt


def nothing_left(moto, tmp_path) -> None:
    assert BUCKET not in {b["Name"] for b in moto.client("s3").list_buckets()["Buckets"]}
    path = tmp_path / ".deploy" / "state.json"
    assert not path.exists() or "model_data" not in state(tmp_path)


@pytest.mark.parametrize(
    "operation",
    [
        "GetBucketOwnershipControls",  # the read-back of CreateBucket's ObjectOwnership
        "PutPublicAccessBlock",
        "GetPublicAccessBlock",
        "PutBucketPolicy",
        "PutBucketEncryption",
        "PutBucketTagging",
        "GetBucketTagging",
    ],
)
def test_a_failed_setup_step_leaves_no_bucket_and_a_rerun_starts_clean(
    moto, cli, onnx, s3_events, operation, tmp_path
):
    armed = [True]

    def fail(**kwargs):
        return denied(**kwargs) if armed[0] else None

    s3_events(f"before-call.s3.{operation}", fail)
    result = cli("package", onnx)
    assert result.code == 2
    line = result.error_line()
    assert f"setting up bucket {BUCKET} failed" in line and operation in line, line
    assert "the bucket was deleted again" in line
    nothing_left(moto, tmp_path)

    armed[0] = False
    rerun = cli("package", onnx)
    assert rerun.code == 0, rerun.err
    assert f"created S3 bucket {BUCKET}" in rerun.err
    assert TAG in moto.client("s3").get_bucket_tagging(Bucket=BUCKET)["TagSet"]


def test_a_setting_that_does_not_take_is_caught_by_its_read_back(moto, cli, onnx, s3_events):
    def weaken(params, **_):
        params["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] = False

    s3_events("before-parameter-build.s3.PutPublicAccessBlock", weaken)
    result = cli("package", onnx)
    assert result.code == 2
    line = result.error_line()
    assert "PutPublicAccessBlock did not take" in line and "'RestrictPublicBuckets': False" in line
    assert BUCKET not in {b["Name"] for b in moto.client("s3").list_buckets()["Buckets"]}


def test_ctrl_c_during_setup_removes_the_bucket(moto, cli, onnx, s3_events, tmp_path):
    s3_events("before-call.s3.PutBucketEncryption", interrupted)
    result = cli("package", onnx)
    assert result.code == 130
    nothing_left(moto, tmp_path)


def test_a_bucket_of_another_account_is_refused_in_one_line(cli, stubbed, onnx, tmp_path):
    """S3 answers 403 to HeadBucket with ExpectedBucketOwner when another account owns it (moto
    does not check the owner: botocore's Stubber plays S3)."""
    s3: Stubber = stubbed.stub("s3")
    s3.add_client_error(
        "head_bucket",
        service_error_code="403",
        service_message="Forbidden",
        http_status_code=403,
        expected_params={"Bucket": BUCKET, OWNER: ACCOUNT},
    )
    result = cli("package", onnx, aws=stubbed)
    assert result.code == 2
    line = result.error_line()
    assert line.startswith(f"error: bucket {BUCKET} belongs to another account"), line
    assert f"ExpectedBucketOwner {ACCOUNT}" in line
    stubbed.verify()  # nothing was created or uploaded after the refusal
    assert not (tmp_path / ".deploy" / "state.json").exists()


def test_an_upload_into_a_bucket_of_another_account_is_refused(cli, stubbed, onnx):
    s3: Stubber = stubbed.stub("s3")
    s3.add_response("head_bucket", {}, {"Bucket": "yolov7-theirs", OWNER: ACCOUNT})
    s3.add_client_error("put_object", service_error_code="AccessDenied", http_status_code=403)
    result = cli("package", onnx, "--bucket", "yolov7-theirs", aws=stubbed)
    assert result.code == 2
    assert "bucket yolov7-theirs belongs to another account" in result.error_line()
    assert "PutObject" in result.error_line()


def test_model_data_in_a_bucket_of_another_account_is_refused_before_up(stubbed, tmp_path):
    s3: Stubber = stubbed.stub("s3")
    s3.add_client_error(
        "head_object",
        service_error_code="403",
        http_status_code=403,
        expected_params={"Bucket": "yolov7-sniped", "Key": "m/model.tar.gz", OWNER: ACCOUNT},
    )
    ctx = Context(store=StateFile(tmp_path / "state.json"), state={})
    ctx.use_aws(stubbed)
    with pytest.raises(UserError, match="bucket yolov7-sniped belongs to another account"):
        preflight.model_bytes(ctx, "s3://yolov7-sniped/m/model.tar.gz")
    stubbed.verify()
