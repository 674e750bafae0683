"""The AWS emulator for `deploy`'s tests: moto's real server on 127.0.0.1 (boto3 talks HTTP to it
through AWS_ENDPOINT_URL), the `moto_url` and `moto` fixtures (a plugin: tests/conftest.py names
this module in `pytest_plugins`), and the helpers around it: names, dummy credentials, the
environment that reaches only moto, state files, Stubber-backed clients, the operator policy."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto.sagemaker import responses as sagemaker_responses
from moto.sagemaker.models import sagemaker_backends
from moto.server import ThreadedMotoServer

from deploy.aws import Aws
from tests.support.server import DIRECT

ROOT = Path(__file__).resolve().parents[2]

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's account
ROLE = f"arn:aws:iam::{ACCOUNT}:role/yolov7-sagemaker-execution"
# Images that each test finds in moto's ECR, as `push` would have left them (see seed_images).
PREBUILT = "yolov7-prebuilt"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{PREBUILT}:20300101-000000"
NEW_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{PREBUILT}:v2"
DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# Distinctive dummy credentials: tests grep every output for them.
ACCESS_KEY = "AKIAMOTOTESTING00001"
SECRET_KEY = "moto-dummy-secret-NEVER-PRINTED-7f3a9c"
# moto's ECR token is base64("AWS:123456789012-auth-token").
ECR_PASSWORD = f"{ACCOUNT}-auth-token"
SYSTEM_PATH = "/usr/bin:/bin"
TAG = {"Key": "managed-by", "Value": "yolov7-sagemaker-deploy"}


def aws_environment(moto_url: str, home: Path) -> dict[str, str]:
    """A process environment that can reach only moto, with dummy credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    env.pop("DEPLOY_CONTAINER_CLI", None)
    env.update(
        AWS_ENDPOINT_URL=moto_url,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(home / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_MAX_ATTEMPTS="3",
        SAGEMAKER_ROLE_ARN=ROLE,
        PATH=SYSTEM_PATH,
        PYTHONPATH=str(ROOT),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


@dataclass
class Moto:
    """The emulator as the tests see it: clients to check its state, and a reset."""

    url: str

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        DIRECT.open(request, timeout=10).read()


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def error_line(self) -> str:
        """A failure is exactly one line on stderr, `error: ...`, and no traceback."""
        assert "Traceback" not in self.text, self.text
        lines = [line for line in self.err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, self.err
        return lines[0]


def manifest(media_type: str = DOCKER_V2S2, layer_bytes: int = 120_000_000, salt: str = "") -> str:
    """An image manifest of that media type (moto reports imageSizeInBytes from config.size);
    with a `salt`, its layer digest (moto's image digest) comes from the salt and the size, so that
    images with another salt or size differ in digest."""
    seed = f"{salt}|{layer_bytes}".encode()
    digest = "sha256:" + (hashlib.sha256(seed).hexdigest() if salt else "0" * 64)
    config_type = (
        "application/vnd.docker.container.image.v1+json"
        if media_type == DOCKER_V2S2
        else "application/vnd.oci.image.config.v1+json"
    )
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "size": layer_bytes, "digest": digest},
            "layers": [{"mediaType": config_type, "size": layer_bytes, "digest": digest}],
        }
    )


CLEAN: dict[str, int] = {}


def put_image(
    emulator: Moto,
    uri: str,
    media_type: str = DOCKER_V2S2,
    size: int = 120_000_000,
    findings: dict[str, int] | None = CLEAN,
) -> str:
    """Store an image in moto's ECR under uri (repository created when missing), with a digest of
    its own; scanned, its scan finding `findings` (counts per severity), unless that is None.
    Returns its digest."""
    repository, _, tag = uri.partition("/")[2].partition(":")
    ecr = emulator.client("ecr")
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=repository)
    digest: str = ecr.put_image(
        repositoryName=repository,
        imageManifest=manifest(media_type, size, salt=uri),
        imageManifestMediaType=media_type,
        imageTag=tag,
    )["image"]["imageId"]["imageDigest"]
    if findings is not None:
        scan_result(emulator, repository, digest, counts=findings)
        ecr.start_image_scan(repositoryName=repository, imageId={"imageDigest": digest})
    return digest


def scan_result(
    emulator: Moto,
    repository: str,
    digest: str,
    status: str = "COMPLETE",
    counts: dict[str, int] | None = None,
    description: str = "The scan was completed successfully.",
    enhanced: list[dict] | None = None,
) -> None:
    """What DescribeImageScanFindings answers for that image from now on (moto's own API for
    scan results: without one, moto answers a fixed HIGH finding). The first result set for an
    image stays its answer: give an image one result."""
    found: dict = {"findingSeverityCounts": counts or {}}
    if enhanced is not None:  # enhanced scanning (Amazon Inspector)'s shape
        found["enhancedFindings"] = enhanced
    result = {
        "registryId": ACCOUNT,
        "repositoryName": repository,
        "imageId": {"imageDigest": digest},
        "imageScanStatus": {"status": status, "description": description},
        "imageScanFindings": found,
    }
    request = urllib.request.Request(
        f"{emulator.url}/moto-api/static/ecr/scan-finding-results",
        data=json.dumps({"region": REGION, "results": [result]}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    DIRECT.open(request, timeout=10).read()


def digest_of(emulator: Moto, uri: str) -> str:
    """The digest moto's ECR holds for REPO:TAG."""
    repository, _, tag = uri.partition("/")[2].partition(":")
    details = emulator.client("ecr").describe_images(
        repositoryName=repository, imageIds=[{"imageTag": tag}]
    )["imageDetails"]
    digest: str = details[0]["imageDigest"]
    return digest


def pinned(uri: str, digest: str) -> str:
    """REPO:TAG as REPO@DIGEST (what the model names)."""
    return f"{uri.rpartition(':')[0]}@{digest}"


def by_digest(emulator: Moto, uri: str) -> str:
    """REPO:TAG as the model names it: REPO@ the digest moto's ECR holds for it."""
    return pinned(uri, digest_of(emulator, uri))


def seed_images(emulator: Moto) -> None:
    for uri in (IMAGE, NEW_IMAGE):
        put_image(emulator, uri)


def state(home: Path) -> dict:
    return json.loads((home / ".deploy" / "state.json").read_text())


def write_state(home: Path, region: str = REGION, **fields) -> None:
    """A deploy state file in `home`, as the tool writes it, with `fields` (endpoint=..., ...)."""
    data = {
        "version": 1,
        "tool": "yolov7-sagemaker-deploy",
        "region": region,
        "resources": [],
        "transform_jobs": [],
        **fields,
    }
    (home / ".deploy").mkdir(exist_ok=True)
    (home / ".deploy" / "state.json").write_text(json.dumps(data))


class StubbedAws(Aws):
    """An Aws whose clients are real botocore clients, each with a Stubber (no network)."""

    def __init__(self, region: str = REGION):
        session = boto3.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=region
        )
        super().__init__(session=session, region=region)
        self.stubbers: dict[str, Stubber] = {}

    def stub(self, service: str, region: str | None = None) -> Stubber:
        if service not in self.stubbers:
            self.stubbers[service] = Stubber(self.client(service, region))
            self.stubbers[service].activate()
        return self.stubbers[service]

    def identity(self) -> dict:
        return {"account": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/tester"}

    def verify(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


# --- what the code calls, against what the IAM policy allows ------------------------------------

OPERATOR_POLICY = ROOT / "iam" / "deploy-operator-policy.json"
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}
# Services whose IAM action prefix is not their signing name.
IAM_PREFIX = {"monitoring": "cloudwatch"}
# S3 API operations whose IAM action has another name.
S3_ACTIONS = {
    "HeadBucket": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock",
    "PutBucketEncryption": "PutEncryptionConfiguration",
    "GetBucketEncryption": "GetEncryptionConfiguration",
    "HeadObject": "GetObject",
}


def policy_patterns(path: Path = OPERATOR_POLICY) -> list[str]:
    patterns = []
    for statement in json.loads(path.read_text())["Statement"]:
        if statement["Effect"] == "Allow":
            listed = statement["Action"]
            patterns += [listed] if isinstance(listed, str) else listed
    return patterns


def not_in_policy(actions) -> list[str]:
    """The IAM actions that the operator policy does NOT allow (empty when all are covered)."""
    patterns = [p.lower() for p in policy_patterns()]
    return [
        action
        for action in sorted(set(actions) - NEEDS_NO_PERMISSION)
        if not any(fnmatch.fnmatch(action.lower(), p) for p in patterns)
    ]


# --- the fixtures ---------------------------------------------------------------------------------

INSECURE_TRANSPORT = {"Bool": {"aws:SecureTransport": "false"}}


def requests_come_over_tls(monkeypatch) -> None:
    """moto serves plain HTTP and ignores a bucket policy's conditions, so the TLS-only policy
    that `package` puts on its bucket (Deny s3:* when aws:SecureTransport is false) would deny
    every object request. The tool's clients speak HTTPS to AWS, where that statement never
    matches: moto evaluates bucket policies without it (the policy itself stays as stored)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(bucket, action: str, resource: str):
        if bucket.policy is None:
            return PermissionResult.NEUTRAL
        document = json.loads(bucket.policy)
        listed = document.get("Statement", [])
        listed = [listed] if isinstance(listed, dict) else listed
        document["Statement"] = [s for s in listed if s.get("Condition") != INSECURE_TRANSPORT]
        return IAMPolicy(json.dumps(document)).is_action_permitted(action, resource)

    monkeypatch.setattr(FakeBucket, "get_permission", get_permission)


def keep_network_isolation() -> None:
    """moto 5.2.1's CreateModel drops EnableNetworkIsolation (its Model always describes False):
    keep the flag the request sent, so describe_model answers what SageMaker would. The only
    change made to moto; applied once, when the server starts (the server runs in this process).
    """
    original = sagemaker_responses.SageMakerResponse.create_model
    if getattr(original, "keeps_isolation", False):
        return

    def create_model(self):  # type: ignore[no-untyped-def]
        result = original(self)
        backend = sagemaker_backends[self.current_account][self.region]
        model = backend.describe_model(self._get_param("ModelName"))
        model.enable_network_isolation = bool(self._get_param("EnableNetworkIsolation"))
        return result

    create_model.keeps_isolation = True  # type: ignore[attr-defined]
    sagemaker_responses.SageMakerResponse.create_model = create_model


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's real server (werkzeug) on 127.0.0.1 and a free port, for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    keep_network_isolation()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto(moto_url, monkeypatch, tmp_path) -> Moto:
    """A clean emulator, this process pointed at it, and the cwd in tmp_path (the state's home)."""
    emulator = Moto(moto_url)
    emulator.reset()
    requests_come_over_tls(monkeypatch)
    seed_images(emulator)
    env = aws_environment(moto_url, tmp_path)
    for key in list(os.environ):
        if key not in env:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return emulator


def answer_instead(monkeypatch, operation: str, answer, times: int | None = None) -> list[dict]:
    """botocore answers `operation` with `answer(params)` (a response dict, or it raises) instead
    of asking moto, for the first `times` calls (None: every call); for the one response moto
    cannot give (a scan still running, an access denied). Returns the params of each call."""
    from botocore.client import BaseClient

    original = BaseClient._make_api_call
    seen: list[dict] = []

    def call(self, operation_name, api_params):
        if operation_name != operation:
            return original(self, operation_name, api_params)
        seen.append(api_params)
        if times is None or len(seen) <= times:
            return answer(api_params)
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    return seen


def denied(operation: str):
    """An `answer` for answer_instead: AccessDenied, as IAM says it."""
    from botocore.exceptions import ClientError

    def answer(_params):
        error = {"Code": "AccessDeniedException", "Message": f"not authorized to {operation}"}
        raise ClientError({"Error": error}, operation)

    return answer
