"""S3 buckets pinned to our account: every S3 call that names a bucket passes ExpectedBucketOwner.

Bucket names are global, and ours are easy to guess (`package`'s default is
PREFIX-sagemaker-ACCOUNT-REGION; async and capture buckets are yolov7-*). Anyone can create such
a bucket first and then receive our model, or hold a substitute that we would deploy. With
ExpectedBucketOwner=<our account id> S3 answers 403 to any request on a bucket another account
owns, so a sniped name fails closed: that header, not the name, is what makes a bucket ours.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from deploy.aws.not_found import is_not_found
from deploy.aws.session import Aws
from deploy.errors import UserError

OWNER = "ExpectedBucketOwner"
DENIED = frozenset({"AccessDenied", "403", "Forbidden"})  # HEAD answers carry only the status


def owner(account: str) -> dict[str, str]:
    """The keyword arguments that pin one S3 call to `account` (ExtraArgs for transfers)."""
    return {OWNER: account}


def ours(aws: Aws) -> dict[str, str]:
    """owner() for the caller's own account (sts:GetCallerIdentity, asked once per session)."""
    return owner(aws.identity()["account"])


def client_error(exc: BaseException) -> ClientError | None:
    """The ClientError behind `exc`: boto3's transfers re-raise it as S3UploadFailedError."""
    for found in (exc, exc.__cause__, exc.__context__):
        if isinstance(found, ClientError):
            return found
    return None


def is_denied(exc: BaseException) -> bool:
    found = client_error(exc)
    if found is None:
        return False
    code = str((found.response.get("Error") or {}).get("Code") or "")
    status = (found.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code in DENIED or status == 403


def not_ours(bucket: str, account: str, exc: BaseException) -> UserError:
    """S3 gives the same 403 for a bucket of another account and for a missing permission."""
    found = client_error(exc)
    operation = found.operation_name if found is not None else "the request"
    return UserError(
        f"bucket {bucket} belongs to another account, or this identity may not use it "
        f"(S3 denied {operation} with ExpectedBucketOwner {account})",
        "use a bucket that account " + account + " owns (see iam/deploy-operator-policy.json)",
    )


@contextmanager
def pinned(bucket: str, account: str) -> Iterator[None]:
    """Turn S3's 403 inside the block into not_ours(): one line, exit 2."""
    try:
        yield
    except Exception as exc:
        if is_denied(exc):
            raise not_ours(bucket, account, exc) from exc
        raise


def exists(s3: Any, bucket: str, account: str) -> bool:
    """True for a bucket of `account`, False for none; another account's one is refused."""
    try:
        with pinned(bucket, account):
            s3.head_bucket(Bucket=bucket, **owner(account))
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    return True
