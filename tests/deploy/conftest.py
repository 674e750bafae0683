"""Fixtures for `deploy`'s tests: the CLI run in-process or as a subprocess, a fake docker/podman
on PATH, the bundled checkpoint exported once, and `python -m serve` started the way SageMaker
starts it. moto's server (`moto_url`, `moto`) is tests.support.aws's, a plugin of the suite."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.cli import main
from tests.support.aws import (
    DOCKER_V2S2,
    IAM_PREFIX,
    ROOT,
    S3_ACTIONS,
    Moto,
    Result,
    StubbedAws,
    aws_environment,
)
from tests.support.server import ServerProcess, free_port


@pytest.fixture
def cli(capsys):
    """Run `python -m deploy ARGS` in this process; `aws=` hands in Stubber-backed clients."""

    def run(*args, aws=None) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args], aws=aws)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def cli_process(moto_url, tmp_path):
    """Run `python -m deploy ARGS` as a child process with the moto environment (+ overrides)."""

    def run(*args, env: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> Result:
        child_env = aws_environment(moto_url, tmp_path)
        child_env.update(env or {})
        for key in drop:
            child_env.pop(key, None)
        done = subprocess.run(
            [sys.executable, "-m", "deploy", *map(str, args)],
            cwd=tmp_path,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def stubbed():
    aws = StubbedAws()
    yield aws
    for stubber in aws.stubbers.values():
        stubber.deactivate()


@pytest.fixture
def api_calls(monkeypatch) -> list[str]:
    """Every AWS operation made by deploy's clients (known by their user agent), as IAM actions."""
    from botocore.client import BaseClient

    from deploy.config import USER_AGENT

    calls: list[str] = []
    original = BaseClient._make_api_call

    def record(self, operation_name, api_params):
        if USER_AGENT not in (self.meta.config.user_agent_extra or ""):
            return original(self, operation_name, api_params)  # the test's own checks
        service = self.meta.service_model.signing_name
        service = IAM_PREFIX.get(service, service)  # CloudWatch signs as "monitoring"
        action = operation_name
        if service == "s3":
            action = S3_ACTIONS.get(operation_name, operation_name)
        calls.append(f"{service}:{action}")
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    return calls


# --- a fake container CLI -----------------------------------------------------------------------

FAKE_CLI = """\
#!{python}
# Stands in for docker/podman: records argv (and the stdin of `login`) as one JSON line.
import json, os, sys
args = sys.argv[1:]
stdin = sys.stdin.read() if "--password-stdin" in args else None
with open(os.environ["FAKE_CLI_LOG"], "a") as log:
    log.write(json.dumps({{"cli": os.path.basename(sys.argv[0]), "argv": args,
                          "stdin": stdin}}) + "\\n")
if args[:1] == ["info"] and os.environ.get("FAKE_DOCKER_ENGINE") == "down":
    print("Cannot connect to the Docker daemon at unix:///var/run/docker.sock", file=sys.stderr)
    sys.exit(1)
if os.environ.get("FAKE_CLI_FAIL") in args[:2]:
    print("step 3/7: RUN pip install ... failed: exit code 1")
    sys.exit(3)
if args[:1] == ["login"]:
    print("Login Succeeded")
if args[:1] == ["run"]:
    # The SBOM's package list: what the image's /opt/venv python prints (FAKE_CLI_PACKAGES).
    print(os.environ.get("FAKE_CLI_PACKAGES", '[["falcon", "4.0.2"], ["onnxruntime", "1.22.0"]]'))
if args[:1] == ["push"]:
    # What a push leaves in ECR (moto's, through AWS_ENDPOINT_URL): a Docker v2s2 manifest. Which
    # flags make a real push store that is proven against a real registry (tests/container).
    import boto3, urllib.request
    remote = args[-1]
    repository, _, tag = remote.partition("/")[2].rpartition(":")
    import hashlib  # each pushed REPO:TAG gets a digest of its own (moto's: from the layers)
    config = {{"size": 7023, "digest": "sha256:" + "cd" * 32,
              "mediaType": "application/vnd.docker.container.image.v1+json"}}
    layer = {{"size": 2412, "digest": "sha256:" + hashlib.sha256(remote.encode()).hexdigest(),
             "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}}
    manifest = json.dumps({{"schemaVersion": 2, "mediaType": "{media_type}", "config": config,
                           "layers": [layer]}})
    ecr = boto3.client("ecr")
    try:
        image = ecr.put_image(repositoryName=repository, imageTag=tag, imageManifest=manifest,
                              imageManifestMediaType="{media_type}")["image"]
    except (ecr.exceptions.ImageAlreadyExistsException,
            ecr.exceptions.ImageTagAlreadyExistsException):
        print(f"tag invalid: The image tag '{{tag}}' already exists in the '{{repository}}' "
              "repository and cannot be overwritten because the repository is immutable.")
        sys.exit(1)
    # ECR's scan on push, clean (moto's API for scan results; tests/support/aws.py scan_result)
    digest = image["imageId"]["imageDigest"]
    result = {{"registryId": image["registryId"], "repositoryName": repository,
              "imageId": {{"imageDigest": digest}}, "imageScanStatus": {{"status": "COMPLETE"}},
              "imageScanFindings": {{"findingSeverityCounts": {{}}}}}}
    body = json.dumps({{"region": ecr.meta.region_name, "results": [result]}}).encode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
    opener.open(urllib.request.Request(
        os.environ["AWS_ENDPOINT_URL"] + "/moto-api/static/ecr/scan-finding-results", data=body,
        headers={{"Content-Type": "application/json"}}, method="POST"), timeout=10).read()
    ecr.start_image_scan(repositoryName=repository, imageId={{"imageDigest": digest}})
    print(tag + ": digest: " + digest + " size: 2412")
"""


@dataclass
class FakeCli:
    bin_dir: Path
    log: Path

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def env(self) -> dict[str, str]:
        # Only the fakes: this machine may have a real podman in /usr/bin.
        return {"PATH": str(self.bin_dir), "FAKE_CLI_LOG": str(self.log)}


@pytest.fixture
def fake_cli(tmp_path, monkeypatch):
    """make(*names): fake CLIs with these names first on PATH (for this process and children)."""

    def make(*names: str) -> FakeCli:
        """With no names: a PATH on which no container CLI exists."""
        bin_dir = tmp_path / "fake-bin"
        bin_dir.mkdir(exist_ok=True)
        for name in names:
            script = bin_dir / name
            script.write_text(FAKE_CLI.format(python=sys.executable, media_type=DOCKER_V2S2))
            script.chmod(0o755)
        fake = FakeCli(bin_dir, tmp_path / "fake-cli.jsonl")
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        return fake

    return make


@pytest.fixture
def build_context(tmp_path) -> Path:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n")
    return context


# --- a real model and a real server --------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _export_started(request, tmp_path_factory):
    """Start exporting the bundled checkpoint at session start, in the background, when a
    collected test needs it: the ~10 s of torch work overlaps the tests that run first."""
    if not any("shapes_onnx" in item.fixturenames for item in request.session.items):
        yield None
        return
    out = tmp_path_factory.mktemp("export") / "shapes-yolov7-tiny.onnx"
    weights = ROOT / "weights" / "shapes-yolov7-tiny.pt"
    command = ["-m", "export", "--weights", weights, "--output", out, "--img-size", "320"]
    log = out.with_suffix(".log")
    with log.open("wb") as sink:  # a file, not a pipe: nothing can block the child
        process = subprocess.Popen(
            [sys.executable, *map(str, command)], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT
        )
    yield process, out, log
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def shapes_onnx(_export_started) -> Path:
    """The bundled YOLOv7-tiny checkpoint through the project's own exporter (once per session)."""
    process, out, log = _export_started
    assert process.wait(timeout=300) == 0, log.read_text()
    return out


@pytest.fixture
def sagemaker_like_server(tmp_path):
    """start(model_data_uri, environment, moto) -> URL: what SageMaker does with a model.

    Downloads the model.tar.gz from (moto's) S3, unpacks it into a fresh /opt/ml/model stand-in,
    and runs `python -m serve serve` with the model's Environment, on loopback; returns the base
    URL once /ping answers 200.
    """
    started: list[ServerProcess] = []

    def start(model_data: str, environment: dict[str, str], emulator: Moto) -> str:
        bucket, _, key = model_data[len("s3://") :].partition("/")
        body = emulator.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        archive = tmp_path / "downloaded-model.tar.gz"
        archive.write_bytes(body)
        model_dir = tmp_path / "opt-ml-model"
        model_dir.mkdir()
        with tarfile.open(archive) as tar:
            tar.extractall(model_dir, filter="data")
        env = {
            **environment,
            "SAGEMAKER_MODEL_DIR": str(model_dir),
            "BAKED_MODEL_PATH": str(tmp_path / "no-baked-model.onnx"),
            "SERVE_HOST": "127.0.0.1",
            "SAGEMAKER_BIND_TO_PORT": str(free_port()),
            "SERVE_THREADS": "4",
        }
        server = ServerProcess(tmp_path / "serve", env, ("serve",), threads={})
        started.append(server)
        try:
            server.wait_ready(60)
        except AssertionError as failed:
            pytest.fail(f"serve did not pass /ping within 60 s: {failed}")
        return server.url

    yield start
    for server in started:
        server.stop(grace=15)
