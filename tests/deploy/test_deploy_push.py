"""`push`: the ECR side against moto, the container side with a fake docker/podman on PATH that
records its argv and stdin. The registry password travels only on `login`'s stdin."""

from __future__ import annotations

import base64

from deploy import sbom
from tests.support.aws import (
    ACCOUNT,
    ECR_PASSWORD,
    PREBUILT,
    REGION,
    SECRET_KEY,
    TAG,
    not_in_policy,
    state,
)

REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
TOKEN = base64.b64encode(f"AWS:{ECR_PASSWORD}".encode()).decode()


def test_push_builds_tags_logs_in_and_pushes_with_the_password_on_stdin(
    moto, cli_process, fake_cli, build_context, tmp_path
):
    docker = fake_cli("docker", "podman")
    result = cli_process(
        "push", "--context", build_context, "--tag", "v7", "--build-arg", "BASE_IMAGE=base:1",
        env=docker.env(),
    )  # fmt: skip
    assert result.code == 0, result.err
    remote = f"{REGISTRY}/yolov7-serve:v7"
    assert result.out == remote + "\n"  # stdout: the image URI only
    calls = [(c["cli"], c["argv"]) for c in docker.calls()]
    assert calls == [
        ("docker", ["info"]),
        (
            "docker",
            [
                "buildx", "build", "--provenance=false", "--sbom=false",
                "--output", "type=docker,oci-mediatypes=false",
                "-t", "yolov7-serve:v7", "--platform", "linux/amd64",
                "--build-arg", "BASE_IMAGE=base:1", str(build_context),
            ],
        ),
        ("docker", ["tag", "yolov7-serve:v7", remote]),
        ("docker", ["login", "--username", "AWS", "--password-stdin", REGISTRY]),
        ("docker", ["push", remote]),
        (
            "docker",
            [
                "run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python",
                "--platform", "linux/amd64", "yolov7-serve:v7", "-c", sbom.LIST_PACKAGES,
            ],
        ),
    ]  # fmt: skip
    login = docker.calls()[3]
    assert login["stdin"] == ECR_PASSWORD + "\n"
    assert all(ECR_PASSWORD not in " ".join(c["argv"]) for c in docker.calls())
    # no secret in what the user sees, nor in the state file
    saved = (tmp_path / ".deploy" / "state.json").read_text()
    for secret in (ECR_PASSWORD, TOKEN, SECRET_KEY):
        assert secret not in result.out + result.err and secret not in saved
    assert "< (ECR password on stdin)" in result.err
    assert state(tmp_path)["image"]["uri"] == remote
    ecr = moto.client("ecr")
    repo = ecr.describe_repositories(repositoryNames=["yolov7-serve"])["repositories"][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert TAG in ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]


def test_podman_is_used_where_the_docker_engine_does_not_answer(
    moto, cli, fake_cli, build_context, monkeypatch
):
    fake = fake_cli("docker", "podman")
    monkeypatch.setenv("FAKE_DOCKER_ENGINE", "down")
    result = cli("push", "--context", build_context, "--tag", "v1")
    assert result.code == 0, result.err
    assert [(c["cli"], c["argv"][0]) for c in fake.calls()] == [
        ("docker", "info"),
        ("podman", "build"),
        ("podman", "tag"),
        ("podman", "login"),
        ("podman", "push"),
        ("podman", "run"),
    ]


def test_podman_alone_is_enough_and_builds_and_pushes_docker_v2s2(
    moto, cli, fake_cli, build_context
):
    fake = fake_cli("podman")
    assert cli("push", "--context", build_context, "--tag", "v1").code == 0
    remote = f"{REGISTRY}/yolov7-serve:v1"
    # podman's default is OCI, which SageMaker refuses (tests/container pushes for real).
    assert [(c["cli"], c["argv"]) for c in fake.calls()] == [
        (
            "podman",
            [
                "build", "--format", "docker", "-t", "yolov7-serve:v1",
                "--platform", "linux/amd64", str(build_context),
            ],
        ),
        ("podman", ["tag", "yolov7-serve:v1", remote]),
        ("podman", ["login", "--username", "AWS", "--password-stdin", REGISTRY]),
        ("podman", ["push", "--format", "v2s2", remote]),
        (
            "podman",
            [
                "run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python",
                "--platform", "linux/amd64", "yolov7-serve:v1", "-c", sbom.LIST_PACKAGES,
            ],
        ),
    ]  # fmt: skip


def test_no_container_cli_at_all_is_an_input_error(moto, cli, fake_cli, build_context):
    fake_cli()  # nothing on PATH
    result = cli("push", "--context", build_context)
    assert result.code == 2
    assert result.error_line() == (
        "error: neither docker nor podman was found. Install one of them."
    )


def test_a_failed_build_stops_before_login_and_says_so(
    moto, cli, fake_cli, build_context, monkeypatch
):
    fake = fake_cli("docker")
    monkeypatch.setenv("FAKE_CLI_FAIL", "build")
    result = cli("push", "--context", build_context, "--tag", "v1")
    assert result.code == 1
    assert result.error_line() == (
        "error: `docker buildx build` exited with 3: step 3/7: RUN pip install ... failed: "
        "exit code 1. Read the output above."
    )
    assert [c["argv"][0] for c in fake.calls()] == ["info", "buildx"]


def test_dry_run_prints_the_commands_and_creates_nothing(
    moto, cli, fake_cli, build_context, api_calls
):
    fake = fake_cli("docker")
    result = cli("push", "--context", build_context, "--tag", "v2", "--dry-run")
    assert result.code == 0, result.err
    remote = f"{REGISTRY}/yolov7-serve:v2"
    assert result.out.splitlines() == [
        "docker buildx build --provenance=false --sbom=false --output type=docker,oci-mediatypes="
        f"false -t yolov7-serve:v2 --platform linux/amd64 {build_context}",
        f"docker tag yolov7-serve:v2 {remote}",
        f"docker login --username AWS --password-stdin {REGISTRY} < (ECR password on stdin)",
        f"docker push {remote}",
        remote,
    ]
    assert "would create ECR repository yolov7-serve" in result.err
    repositories = moto.client("ecr").describe_repositories()["repositories"]
    assert [r["repositoryName"] for r in repositories] == [PREBUILT]  # the seeded one only
    assert [c["argv"] for c in fake.calls()] == [["info"]]  # only the engine probe ran
    assert ECR_PASSWORD not in result.out + result.err
    assert not_in_policy(api_calls) == []


def test_an_existing_repository_is_reused_and_not_claimed(moto, cli, fake_cli, build_context):
    ecr = moto.client("ecr")
    ecr.create_repository(repositoryName="team-images")  # someone else's, untagged
    fake_cli("docker")
    result = cli("push", "--context", build_context, "--repository", "team-images", "--tag", "a")
    assert result.code == 0, result.err
    assert state(build_context.parent)["image"]["repository_created"] is False
    down = cli("down", "--delete-repository")
    assert down.code == 2  # refused: not ours
    assert "REFUSED  ECR repository team-images" in down.out
    assert ecr.describe_repositories(repositoryNames=["team-images"])["repositories"]


def test_the_policy_covers_what_docker_push_needs_from_ecr():
    layer_push = [
        "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage",
    ]
    assert not_in_policy(layer_push) == []
