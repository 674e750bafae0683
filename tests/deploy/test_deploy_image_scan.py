"""The supply-chain gate against moto's ECR: `up`/`update` read the image's scan findings and
refuse CRITICAL/HIGH (or no readable scan) unless --allow-vulnerabilities, the model names the
image by digest, `push` makes immutable repositories with a lifecycle policy and writes a
CycloneDX SBOM of the image's Python packages.

moto answers DescribeImageScanFindings from results set through its own API (scan_result); the
two answers it cannot give (a scan still running, an access denied) come from botocore's client
for that one operation (answer_instead)."""

from __future__ import annotations

import json

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from deploy import image_scan, images, sbom
from tests.support.aws import (
    ACCOUNT,
    IMAGE,
    PREBUILT,
    REGION,
    answer_instead,
    by_digest,
    denied,
    digest_of,
    not_in_policy,
    pinned,
    put_image,
    scan_result,
    state,
)

ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
VULNERABLE = f"{ECR}/{PREBUILT}:vulnerable"
UP = ("--instance-type", "ml.c5.xlarge", "--no-model-data", "--poll", "0")


def nothing_created(moto, home) -> None:
    sm = moto.client("sagemaker")
    assert sm.list_models()["Models"] == []
    assert sm.list_endpoints()["Endpoints"] == []
    assert not (home / ".deploy" / "state.json").exists()


def model_image(moto) -> str:
    sm = moto.client("sagemaker")
    (model,) = sm.list_models()["Models"]
    return sm.describe_model(ModelName=model["ModelName"])["PrimaryContainer"]["Image"]


@pytest.fixture(autouse=True)
def short_waits(monkeypatch):
    monkeypatch.setattr(image_scan, "POLL_S", 0.0)
    monkeypatch.setattr(image_scan, "WAIT_S", 5.0)


def test_a_clean_image_passes_and_the_model_names_it_by_digest(moto, cli, tmp_path, api_calls):
    made = cli("up", "--image", IMAGE, *UP)
    assert made.code == 0, made.err
    digest = digest_of(moto, IMAGE)
    assert model_image(moto) == f"{ECR}/{PREBUILT}@{digest}"
    assert f"image scan of {ECR}/{PREBUILT}@{digest}: no findings" in made.err
    recorded = state(tmp_path)["endpoint"]
    assert recorded["image"] == IMAGE and recorded["pinned_image"] == pinned(IMAGE, digest)
    assert "ecr:DescribeImageScanFindings" in api_calls
    assert "ecr:StartImageScan" not in api_calls  # scanned on push: read, not started


@pytest.mark.parametrize(
    ("status", "counts", "enhanced"),
    [
        ("COMPLETE", {"CRITICAL": 1, "HIGH": 2, "MEDIUM": 3}, None),
        # enhanced scanning (Amazon Inspector): ACTIVE while it monitors, its own findings shape
        (
            "ACTIVE",
            {"CRITICAL": 1, "HIGH": 2, "MEDIUM": 3},
            [{"severity": "HIGH", "packageVulnerabilityDetails": {"vulnerabilityId": "CVE-1"}}],
        ),
    ],
    ids=["basic", "enhanced"],
)
def test_critical_and_high_findings_are_refused_in_one_line_creating_nothing(
    moto, cli, tmp_path, status, counts, enhanced
):
    digest = put_image(moto, VULNERABLE, findings=None)
    scan_result(moto, PREBUILT, digest, status=status, counts=counts, enhanced=enhanced)
    moto.client("ecr").start_image_scan(repositoryName=PREBUILT, imageId={"imageDigest": digest})
    refused = cli("up", "--image", VULNERABLE, *UP)
    assert refused.code == 2
    assert refused.error_line() == (
        f"error: image {ECR}/{PREBUILT}@{digest} has 1 CRITICAL and 2 HIGH vulnerabilities in its "
        "ECR scan (CRITICAL 1, HIGH 2, MEDIUM 3). Rebuild it on patched packages and push it, or "
        "pass --allow-vulnerabilities."
    )
    nothing_created(moto, tmp_path)


def test_allow_vulnerabilities_goes_on_with_a_warning(moto, cli, tmp_path):
    put_image(moto, VULNERABLE, findings={"HIGH": 4, "LOW": 1})
    made = cli("up", "--image", VULNERABLE, *UP, "--allow-vulnerabilities")
    assert made.code == 0, made.err
    assert (
        f"warning: image {by_digest(moto, VULNERABLE)} has 4 HIGH vulnerabilities in its ECR scan "
        "(HIGH 4, LOW 1); deploying it anyway (--allow-vulnerabilities)"
    ) in made.err
    assert model_image(moto) == by_digest(moto, VULNERABLE)


def test_a_scan_in_progress_is_waited_for(moto, cli, monkeypatch):
    running = {"imageScanStatus": {"status": "IN_PROGRESS", "description": "scanning"}}
    asked = answer_instead(monkeypatch, "DescribeImageScanFindings", lambda _: running, times=2)
    made = cli("up", "--image", IMAGE, *UP)
    assert made.code == 0, made.err
    # the first read, one poll still running, then moto's COMPLETE: the waiter asked again
    assert len(asked) == 3
    assert all(a["imageId"] == {"imageDigest": digest_of(moto, IMAGE)} for a in asked)
    assert f"ECR scan of {by_digest(moto, IMAGE)}: IN_PROGRESS" in made.err
    assert model_image(moto) == by_digest(moto, IMAGE)


def test_a_scan_still_running_after_the_wait_is_refused_unless_allowed(
    moto, cli, monkeypatch, tmp_path
):
    monkeypatch.setattr(image_scan, "WAIT_S", 0.0)
    running = {"imageScanStatus": {"status": "IN_PROGRESS"}}
    answer_instead(monkeypatch, "DescribeImageScanFindings", lambda _: running)
    refused = cli("up", "--image", IMAGE, *UP)
    assert refused.code == 2
    line = refused.error_line()
    assert "has no scan findings to check (IN_PROGRESS: still running after 0 s)" in line
    assert "--allow-vulnerabilities to deploy it unscanned" in line
    nothing_created(moto, tmp_path)
    made = cli("up", "--image", IMAGE, *UP, "--allow-vulnerabilities")
    assert made.code == 0, made.err
    assert "deploying it unscanned (--allow-vulnerabilities)" in made.err


def test_an_image_never_scanned_gets_a_scan_started(moto, cli, api_calls, tmp_path):
    image = f"{ECR}/{PREBUILT}:unscanned"
    digest = put_image(moto, image, findings=None)
    scan_result(moto, PREBUILT, digest)  # what the scan will find: nothing
    # --dry-run only reads: it says so and starts nothing
    shown = cli("up", "--image", image, *UP, "--dry-run")
    assert shown.code == 0, shown.err
    assert "has not been scanned: a real run starts a scan" in shown.err
    assert "ecr:StartImageScan" not in api_calls
    made = cli("up", "--image", image, *UP)
    assert made.code == 0, made.err
    assert f"image {ECR}/{PREBUILT}@{digest} has not been scanned: starting an ECR scan" in made.err
    assert api_calls.count("ecr:StartImageScan") == 1
    assert not_in_policy(api_calls) == []
    assert model_image(moto) == pinned(image, digest)


@pytest.mark.parametrize("status", ["FAILED", "UNSUPPORTED_IMAGE"])
def test_a_scan_that_failed_is_refused(moto, cli, tmp_path, status):
    digest = put_image(moto, VULNERABLE, findings=None)
    scan_result(moto, PREBUILT, digest, status=status, description="the scan could not run")
    moto.client("ecr").start_image_scan(repositoryName=PREBUILT, imageId={"imageDigest": digest})
    refused = cli("up", "--image", VULNERABLE, *UP)
    assert refused.code == 2
    assert f"has no scan findings to check ({status}: the scan could not run)" in (
        refused.error_line()
    )
    nothing_created(moto, tmp_path)


def test_findings_another_account_keeps_are_not_checked_but_said(moto, cli, monkeypatch):
    answer_instead(monkeypatch, "DescribeImageScanFindings", denied("DescribeImageScanFindings"))
    made = cli("up", "--image", IMAGE, *UP)
    assert made.code == 0, made.err
    assert "warning: cannot read the scan findings of" in made.err
    assert "(AccessDeniedException): not checked" in made.err
    assert model_image(moto) == by_digest(moto, IMAGE)  # the digest was readable: pinned


def test_update_of_the_same_tag_with_a_new_digest_deploys_the_new_digest(moto, cli, tmp_path):
    assert cli("up", "--image", IMAGE, *UP).code == 0
    old = state(tmp_path)["endpoint"]["pinned_image"]
    # the seeded repository is mutable (made outside `push`): the tag moves to a new image
    put_image(moto, IMAGE, size=130_000_000)
    new = by_digest(moto, IMAGE)
    assert new != old
    shown = cli("update", "--image", IMAGE, "--dry-run", "--json")
    assert shown.code == 0, shown.err
    (create,) = [c for c in json.loads(shown.out) if c["operation"] == "CreateModel"]
    assert create["parameters"]["PrimaryContainer"]["Image"] == new
    assert f"update: image digest -> {new.rpartition('@')[2]}" in shown.err


def test_a_new_repository_is_immutable_with_a_lifecycle_policy_and_push_writes_an_sbom(
    moto, cli, fake_cli, build_context, tmp_path, monkeypatch
):
    monkeypatch.setenv("FAKE_CLI_PACKAGES", json.dumps([["Falcon", "4.0.2"], ["numpy", "2.4.6"]]))
    fake_cli("docker")
    pushed = cli("push", "--context", build_context, "--tag", "v1")
    assert pushed.code == 0, pushed.err
    ecr = moto.client("ecr")
    repo = ecr.describe_repositories(repositoryNames=["yolov7-serve"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    policy = json.loads(
        ecr.get_lifecycle_policy(repositoryName="yolov7-serve")["lifecyclePolicyText"]
    )
    assert policy == images.lifecycle_policy()
    rules = {r["selection"]["tagStatus"]: r["selection"] for r in policy["rules"]}
    assert rules["untagged"]["countNumber"] == images.UNTAGGED_DAYS == 7
    assert rules["any"]["countNumber"] == images.KEEP_IMAGES == 30

    # the SBOM: beside the state, recorded, valid CycloneDX 1.6, the image by digest, purls
    image = f"{ECR}/yolov7-serve:v1"
    recorded = state(tmp_path)["image"]
    written = tmp_path / ".deploy" / "state.sbom.cdx.json"
    assert recorded["sbom"] == written.name and recorded["digest"] == digest_of(moto, image)
    text = written.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    assert [(c["name"], c["version"], c["purl"]) for c in bom["components"]] == [
        ("Falcon", "4.0.2", "pkg:pypi/falcon@4.0.2"),
        ("numpy", "2.4.6", "pkg:pypi/numpy@2.4.6"),
    ]
    component = bom["metadata"]["component"]
    assert component["type"] == "container" and component["version"] == recorded["digest"]
    assert component["purl"] == (
        f"pkg:oci/yolov7-serve@{recorded['digest']}?repository_url={ECR}/yolov7-serve&tag=v1"
    )
    assert "wrote .deploy/state.sbom.cdx.json: CycloneDX SBOM of 2 Python packages" in pushed.err


def test_pushing_a_tag_that_exists_in_an_immutable_repository_is_one_line(
    moto, cli, fake_cli, build_context
):
    fake = fake_cli("docker")
    assert cli("push", "--context", build_context, "--tag", "v1").code == 0
    before = len(fake.calls())
    again = cli("push", "--context", build_context, "--tag", "v1")
    assert again.code == 2
    assert again.error_line() == (
        "error: tag v1 already exists in ECR repository yolov7-serve, whose tags are immutable. "
        "Push under a new --tag (without --tag, push uses a fresh timestamp)."
    )
    assert [c["argv"][0] for c in fake.calls()[before:]] == ["info"]  # nothing built or pushed


def test_ecr_refusing_the_tag_at_push_time_is_one_line(
    moto, cli, fake_cli, build_context, monkeypatch
):
    """Another push took the tag between the check and our push: the CLI's own refusal."""
    fake_cli("docker")
    assert cli("push", "--context", build_context, "--tag", "v1").code == 0
    monkeypatch.setattr(images, "tag_taken", lambda *_: False)
    again = cli("push", "--context", build_context, "--tag", "v1")
    assert again.code == 2
    assert again.error_line() == (
        "error: ECR refused tag v1: it exists already in yolov7-serve, whose tags are immutable. "
        "Push under a new --tag (without --tag, push uses a fresh timestamp)."
    )


def test_a_lifecycle_policy_that_fails_removes_the_new_repository(
    moto, cli, fake_cli, build_context, monkeypatch, tmp_path
):
    fake = fake_cli("docker")
    answer_instead(monkeypatch, "PutLifecyclePolicy", denied("PutLifecyclePolicy"))
    result = cli("push", "--context", build_context, "--tag", "v1")
    assert result.code == 1
    line = result.error_line()
    assert "setting up ECR repository yolov7-serve failed:" in line
    assert "the repository was deleted again" in line
    names = [
        r["repositoryName"] for r in moto.client("ecr").describe_repositories()["repositories"]
    ]
    assert names == [PREBUILT]  # the seeded one only
    assert [c["argv"][0] for c in fake.calls()] == ["info"]  # nothing built or pushed
    assert not (tmp_path / ".deploy" / "state.json").exists()


def test_a_failed_package_listing_keeps_the_push_and_records_no_sbom(
    moto, cli, fake_cli, build_context, monkeypatch, tmp_path
):
    fake_cli("docker")
    assert cli("push", "--context", build_context, "--tag", "v1").code == 0
    written = tmp_path / ".deploy" / "state.sbom.cdx.json"
    assert written.exists()
    monkeypatch.setenv("FAKE_CLI_FAIL", "run")
    pushed = cli("push", "--context", build_context, "--tag", "v2")
    assert pushed.code == 0, pushed.err
    assert pushed.out.strip() == f"{ECR}/yolov7-serve:v2"
    warnings = [line for line in pushed.err.splitlines() if "no SBOM written" in line]
    assert warnings == [
        "warning: no SBOM written: the image's packages could not be listed (docker run exited "
        "with 3: step 3/7: RUN pip install ... failed: exit code 1)"
    ]
    recorded = state(tmp_path)["image"]
    assert recorded["uri"] == f"{ECR}/yolov7-serve:v2" and recorded["sbom"] is None
    assert not written.exists()  # it described v1


def test_the_sbom_path_sits_beside_the_state(tmp_path):
    assert sbom.path_for(tmp_path / "prod.json") == tmp_path / "prod.sbom.cdx.json"
