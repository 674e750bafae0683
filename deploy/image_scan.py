"""Before `up` or `update` creates anything: what ECR's scan found in the image, and the image
pinned by its digest.

ECR scans an image on push (basic scanning) or keeps scanning it (enhanced scanning, through
Amazon Inspector), but nothing stops a vulnerable image unless someone reads the findings. `vet`
reads them for the exact digest the model will name (`REPO@sha256:...`), so what was checked is
what runs even when the tag moves later. CRITICAL or HIGH findings, and a scan that cannot be
read (failed, unsupported, still running after a short wait), refuse the deployment unless
`--allow-vulnerabilities` says to go on; then a warning says what is deployed anyway.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from deploy import image_check
from deploy.aws.waiting import wait_for
from deploy.context import Context
from deploy.errors import AwsError, UserError
from deploy.schema import State

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED", "UNTRIAGED")
REFUSED = ("CRITICAL", "HIGH")
# Findings can be read: a basic scan finished, or enhanced scanning monitors the image.
READY = ("COMPLETE", "ACTIVE")
# A scan on its way: worth a short wait.
RUNNING = ("IN_PROGRESS", "PENDING")
# How long `up` / `update` wait for a scan in progress (a basic scan takes a minute or two);
# module settings so that the tests can wait less.
WAIT_S = 120.0
POLL_S = 5.0
DENIED = ("AccessDeniedException", "AccessDenied")
ALLOW = "--allow-vulnerabilities"


@dataclass(frozen=True)
class Findings:
    status: str  # ECR's imageScanStatus.status (or NOT_SCANNED: none exists and none could start)
    description: str
    counts: dict[str, int]  # findings per severity


def vet(ctx: Context, uri: str, allow_vulnerabilities: bool, read_only: bool = False) -> str:
    """The checked image (image_check.check), its scan findings judged; returns the image's URI
    pinned by digest (the URI as given where ECR cannot be read). `read_only` (--dry-run): a
    missing scan is not started, only said."""
    digest = image_check.check(ctx, uri)
    if digest is None:  # cross-account, not readable: image_check said so
        ctx.log(f"warning: the digest of {uri} is unknown: the model names it by tag, unscanned")
        return uri
    target = image_check.pinned(uri, digest)
    findings = read(ctx, target, read_only)
    if findings is not None:
        judge(ctx, target, findings, allow_vulnerabilities)
    return target


def read(ctx: Context, uri: str, read_only: bool = False) -> Findings | None:
    """The findings of the image `uri` names by digest: a missing scan is started (unless
    `read_only`) and a running one waited for (WAIT_S at most). None where there is nothing to
    judge: the operator may not read them (another account's repository, as image_check goes on
    there too), or `read_only` found no scan."""
    image = image_check.parse(uri)
    ecr = ctx.aws.client("ecr")
    params = {
        "registryId": image.account,
        "repositoryName": image.repository,
        "imageId": {"imageDigest": image.digest},
    }
    try:
        response = ecr.describe_image_scan_findings(**params)
    except ClientError as exc:
        code = _code(exc)
        if code in DENIED:
            ctx.log(f"warning: cannot read the scan findings of {uri} ({code}): not checked")
            return None
        if code != "ScanNotFoundException":
            raise
        if read_only:
            ctx.log(f"note: {uri} has not been scanned: a real run starts a scan and judges it")
            return None
        response = _start(ctx, ecr, params, uri)
    if _status(response) in RUNNING:
        response = _wait(ctx, ecr, params, uri)
    return _findings(response)


def judge(ctx: Context, uri: str, findings: Findings, allow: bool) -> None:
    """Say the counts; refuse CRITICAL / HIGH, or findings that cannot be read, unless `allow`."""
    if findings.status not in READY:
        problem = f"image {uri} has no scan findings to check ({findings.status}"
        problem += f": {findings.description})" if findings.description else ")"
        if allow:
            ctx.log(f"warning: {problem}; deploying it unscanned ({ALLOW})")
            return
        raise UserError(
            problem,
            "scan it in ECR (scan on push, or `aws ecr start-image-scan`) and try again, or pass "
            f"{ALLOW} to deploy it unscanned",
        )
    shown = counts_text(findings.counts)
    refused = [f"{findings.counts[s]} {s}" for s in REFUSED if findings.counts.get(s)]
    if not refused:
        ctx.log(f"image scan of {uri}: {shown}")
        return
    said = f"image {uri} has {' and '.join(refused)} vulnerabilities in its ECR scan ({shown})"
    if allow:
        ctx.log(f"warning: {said}; deploying it anyway ({ALLOW})")
        return
    raise UserError(said, f"rebuild it on patched packages and push it, or pass {ALLOW}")


def counts_text(counts: dict[str, int]) -> str:
    """`CRITICAL 1, HIGH 2, MEDIUM 5` (severities in ECR's order; zero counts left out)."""
    order = [*SEVERITIES, *sorted(set(counts) - set(SEVERITIES))]
    shown = [f"{severity} {counts[severity]}" for severity in order if counts.get(severity)]
    return ", ".join(shown) or "no findings"


def recorded_pin(state: State, uri: str) -> str | None:
    """The digest-pinned URI this state last saw for `uri` (`push`'s or the endpoint's), without
    an AWS call (`template`); None when it saw none."""
    if "@sha256:" in uri:
        return uri
    pushed = state.get("image") or {}
    if pushed.get("uri") == uri and pushed.get("digest"):
        return image_check.pinned(uri, pushed["digest"])
    endpoint = state.get("endpoint") or {}
    if endpoint.get("image") == uri and endpoint.get("pinned_image"):
        return endpoint["pinned_image"]
    return None


def _start(ctx: Context, ecr: Any, params: dict[str, Any], uri: str) -> dict[str, Any]:
    """No scan of this image yet (scan on push off, or pushed before it was on): start one."""
    ctx.log(f"image {uri} has not been scanned: starting an ECR scan")
    try:
        started: dict[str, Any] = ecr.start_image_scan(**params)
    except ClientError as exc:
        code = _code(exc)
        if code == "UnsupportedImageTypeException":
            return _answer("UNSUPPORTED_IMAGE", exc.response["Error"].get("Message", ""))
        if code in DENIED:
            return _answer("NOT_SCANNED", f"no scan exists and StartImageScan was refused ({code})")
        raise
    return started


def _wait(ctx: Context, ecr: Any, params: dict[str, Any], uri: str) -> dict[str, Any]:
    """botocore's `image_scan_complete` waiter decides COMPLETE / FAILED; any other settled
    status (enhanced scanning's ACTIVE, UNSUPPORTED_IMAGE, ...) ends the wait as well."""
    statuses = ecr.meta.service_model.shape_for("ScanStatus").enum
    try:
        result = wait_for(
            ecr,
            "image_scan_complete",
            params,
            label=f"ECR scan of {uri}",
            status_of=_status,
            poll=POLL_S,
            timeout=WAIT_S,
            stuck=tuple(s for s in statuses if s not in RUNNING),
        )
    except AwsError:  # the time is up: wait_for's budget is the only AwsError it raises
        return _answer("IN_PROGRESS", f"still running after {WAIT_S:.0f} s")
    return result.response


def _findings(response: dict[str, Any]) -> Findings:
    status = response.get("imageScanStatus") or {}
    found = response.get("imageScanFindings") or {}
    counts = found.get("findingSeverityCounts")
    if counts is None:  # counted from the findings themselves (basic or enhanced shape)
        listed = [*found.get("findings", []), *found.get("enhancedFindings", [])]
        counts = Counter(str(f.get("severity", "UNDEFINED")).upper() for f in listed)
    return Findings(
        status=status.get("status", "UNKNOWN"),
        description=status.get("description", ""),
        counts={str(k).upper(): int(v) for k, v in counts.items()},
    )


def _answer(status: str, description: str) -> dict[str, Any]:
    """A describe-shaped answer for a status ECR did not give in one (for `_findings`)."""
    return {"imageScanStatus": {"status": status, "description": description}}


def _status(response: dict[str, Any]) -> str:
    return str((response.get("imageScanStatus") or {}).get("status", "UNKNOWN"))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
