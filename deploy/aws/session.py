"""The boto3 session: standard credential chain, --profile, --region, --assume-role, retries.

Credentials are never printed or logged: only the identity's ARN (not a secret) is shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from deploy import config
from deploy.errors import UserError

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


def client_config(**overrides: Any) -> Config:
    """Retries through botocore (throttling included), our user agent, sane timeouts."""
    settings: dict[str, Any] = {
        "retries": config.retry_settings(),
        "user_agent_extra": config.USER_AGENT,
        "connect_timeout": 10,
        "read_timeout": 70,
    }
    settings.update(overrides)
    return Config(**settings)


@dataclass
class Aws:
    """One boto3 session and the clients made from it, created on first use."""

    session: boto3.Session
    region: str
    assumed_role: dict[str, Any] | None = None
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _identity: dict[str, str] | None = field(default=None, repr=False)

    def client(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self.region)
        if key not in self._clients:
            self._clients[key] = self.session.client(
                service, region_name=region or self.region, config=client_config()
            )
        return self._clients[key]

    def identity(self) -> dict[str, str]:
        """sts:GetCallerIdentity: Account, Arn, UserId (no permission needed), asked once: every
        S3 call names the account as ExpectedBucketOwner (deploy/aws/buckets.py)."""
        if self._identity is None:
            found = self.client("sts").get_caller_identity()
            self._identity = {"account": found["Account"], "arn": found["Arn"]}
        return dict(self._identity)


def connect(
    region: str | None = None,
    profile: str | None = None,
    assume_role: str | None = None,
    external_id: str | None = None,
    default_region: str | None = None,
) -> Aws:
    """A session from the standard chain (or --profile), optionally as an assumed role."""
    session = boto3.Session(profile_name=profile, region_name=region)
    resolved = region or session.region_name or default_region
    if not resolved:
        raise UserError(
            "no AWS region is set",
            "pass --region, or set AWS_DEFAULT_REGION or a region in your profile",
        )
    if not assume_role:
        return Aws(session=session, region=resolved)
    if not ROLE_ARN.match(assume_role):
        raise UserError(
            f"--assume-role {assume_role!r} is not an IAM role ARN",
            "expected arn:aws:iam::ACCOUNT:role/NAME",
        )
    sts = session.client("sts", region_name=resolved, config=client_config())
    kwargs: dict[str, Any] = {
        "RoleArn": assume_role,
        "RoleSessionName": f"{config.TOOL}-{datetime.now(UTC):%Y%m%d%H%M%S}"[:64],
    }
    if external_id:
        kwargs["ExternalId"] = external_id
    answer = sts.assume_role(**kwargs)
    creds = answer["Credentials"]
    assumed = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=resolved,
    )
    info = {
        "arn": answer["AssumedRoleUser"]["Arn"],
        "expires": creds["Expiration"].isoformat() if creds.get("Expiration") else None,
    }
    return Aws(session=assumed, region=resolved, assumed_role=info)
