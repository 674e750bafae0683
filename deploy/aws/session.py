"""The boto3 session: standard credential chain, --profile, --region, --assume-role, retries.

Credentials are never printed or logged: only the identity's ARN (not a secret) is shown.

--assume-role's credentials last --duration seconds (default one hour) while a wait may last
longer: they are botocore RefreshableCredentials whose refresh calls sts:AssumeRole again (with the
source identity's client), so every client made from the session gets new keys before the old
ones expire, and a long `up` or `update` never dies of ExpiredToken half-way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    RefreshableCredentials,
)

from deploy import config
from deploy.errors import UserError

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
# sts:AssumeRole's DurationSeconds bounds (the role's MaxSessionDuration may allow less).
MIN_DURATION_S, MAX_DURATION_S, DEFAULT_DURATION_S = 900, 43200, 3600


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


def check_duration(value: str | None, assume_role: str | None) -> int | None:
    """--duration SECONDS as an int in AssumeRole's range, or None when not given."""
    if value is None:
        return None
    if not assume_role:
        raise UserError("--duration sets the lifetime of --assume-role's credentials", "add it")
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if not MIN_DURATION_S <= seconds <= MAX_DURATION_S:
        raise UserError(
            f"--duration {value!r} must be whole seconds from {MIN_DURATION_S} to {MAX_DURATION_S}",
            "the role's MaxSessionDuration may allow less (one hour unless raised)",
        )
    return seconds


class _Given(CredentialProvider):
    """A credential chain of one link: the refreshable credentials made below."""

    METHOD = "assume-role"

    def __init__(self, credentials: RefreshableCredentials):
        super().__init__()
        self._credentials = credentials

    def load(self) -> RefreshableCredentials:
        return self._credentials


@dataclass
class _AssumeRole:
    """sts:AssumeRole with the source identity's client: the first credentials and each refresh."""

    sts: Any
    request: dict[str, Any]
    arn: str = ""

    def fetch(self) -> dict[str, Any]:
        answer = self.sts.assume_role(**self.request)
        self.arn = answer["AssumedRoleUser"]["Arn"]
        creds = answer["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }


def connect(
    region: str | None = None,
    profile: str | None = None,
    assume_role: str | None = None,
    external_id: str | None = None,
    default_region: str | None = None,
    duration: int | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Aws:
    """A session from the standard chain (or --profile), optionally as an assumed role whose
    credentials refresh themselves (`clock`: what "now" is to the refresh; tests move it)."""
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
    seconds = duration or DEFAULT_DURATION_S
    request: dict[str, Any] = {
        "RoleArn": assume_role,
        "RoleSessionName": f"{config.TOOL}-{datetime.now(UTC):%Y%m%d%H%M%S}"[:64],
        "DurationSeconds": seconds,
    }
    if external_id:
        request["ExternalId"] = external_id
    role = _AssumeRole(sts, request)
    first = role.fetch()  # now, so that a refused role fails before anything else
    credentials = RefreshableCredentials(
        access_key=first["access_key"],
        secret_key=first["secret_key"],
        token=first["token"],
        expiry_time=datetime.fromisoformat(first["expiry_time"]),
        refresh_using=role.fetch,
        method=_Given.METHOD,
        time_fetcher=clock or (lambda: datetime.now(UTC)),
        # botocore's 15/10 minutes before expiry, scaled down for short lifetimes so that a
        # 15-minute session is not renewed on every call
        advisory_timeout=min(15 * 60, seconds // 4),
        mandatory_timeout=min(10 * 60, seconds // 6),
    )
    core = botocore.session.Session()
    core.register_component("credential_provider", CredentialResolver([_Given(credentials)]))
    assumed = boto3.Session(botocore_session=core, region_name=resolved)
    info = {"arn": role.arn, "expires": first["expiry_time"], "duration": seconds}
    return Aws(session=assumed, region=resolved, assumed_role=info)
