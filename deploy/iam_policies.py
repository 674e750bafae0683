"""The shipped IAM documents (iam/*.json), rendered for one account and region.

The files name the account as ACCOUNT_ID and the region as REGION, so that every ARN with an
account field, every `s3:ResourceAccount` condition and the trust policy's `aws:SourceAccount` are
pinned to one account. A file pasted unrendered matches nothing (fails closed); `python -m deploy
iam --account N` writes the real ones.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from deploy.errors import UserError

ACCOUNT = "ACCOUNT_ID"
REGION = "REGION"
ALL_REGIONS = "*"
# The repository's iam/ folder, beside the deploy package (the files are not package data).
SOURCE = Path(__file__).resolve().parents[1] / "iam"
DOCUMENTS = (
    "deploy-operator-policy.json",
    "sagemaker-execution-role-policy.json",
    "sagemaker-execution-role-trust.json",
)

_ACCOUNT_RE = re.compile(r"\d{12}")
# aws regions: eu-west-1, us-gov-west-1, cn-north-1, ap-southeast-5, us-isob-east-1, ...
_REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_PLACEHOLDER_RE = re.compile(rf"\b({ACCOUNT}|{REGION})\b")


def check_account(account: str) -> str:
    if not _ACCOUNT_RE.fullmatch(account):
        raise UserError(
            f"--account {account!r} is not an AWS account id",
            "pass the 12 digits that `aws sts get-caller-identity --query Account` prints",
        )
    return account


def check_region(region: str) -> str:
    if region != ALL_REGIONS and not _REGION_RE.fullmatch(region):
        raise UserError(
            f"--region {region!r} is not an AWS region", "e.g. eu-west-1, or leave it out"
        )
    return region


def render(document: Any, account: str, region: str = ALL_REGIONS) -> Any:
    """A copy of `document` with every ACCOUNT_ID and REGION in its strings replaced."""
    values = {ACCOUNT: check_account(account), REGION: check_region(region)}
    if isinstance(document, str):
        return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], document)
    if isinstance(document, list):
        return [render(item, account, region) for item in document]
    if isinstance(document, dict):
        return {key: render(value, account, region) for key, value in document.items()}
    return document


def placeholders(document: Any) -> set[str]:
    """The placeholders still in `document` (none once rendered)."""
    return set(_PLACEHOLDER_RE.findall(json.dumps(document)))


def load(name: str, source: Path = SOURCE) -> Any:
    path = source / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"no {path}", "run from a checkout of the repository, or pass --source DIR"
        ) from None


def rendered(account: str, region: str = ALL_REGIONS, source: Path = SOURCE) -> dict[str, Any]:
    """Each shipped document, by file name, rendered for `account` and `region`."""
    return {name: render(load(name, source), account, region) for name in DOCUMENTS}
