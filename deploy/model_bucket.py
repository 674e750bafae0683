"""`package`'s bucket, made as a transaction: created private, TLS-only, encrypted and tagged
before the first upload, or not at all.

Each step is read back before the next one. When a step fails (or Ctrl-C), the bucket this run
just created, still empty, is deleted again, so a rerun starts clean instead of skipping an
untagged, public-capable bucket. A bucket that exists and is ours is used as it is; one of another
account is refused (ExpectedBucketOwner, deploy/aws/buckets.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from deploy import errors, names
from deploy.aws import buckets
from deploy.errors import UserError

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
OWNERSHIP = "BucketOwnerEnforced"  # ACLs off: every object belongs to the bucket's account


def tls_only_policy(bucket: str) -> dict[str, Any]:
    """Deny every request that does not come over TLS (AWS Config s3-bucket-ssl-requests-only)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def encryption_rule(kms_key: str | None) -> dict[str, Any]:
    """SSE-S3, or SSE-KMS with that key (a bucket key keeps the KMS requests few)."""
    if kms_key is None:
        return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    return {
        "ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": kms_key,
        },
        "BucketKeyEnabled": True,
    }


@dataclass
class Step:
    """One setting: `make` applies it, `check` reads it back and says what differs (or None)."""

    name: str  # the S3 operation, as the error line names it
    make: Callable[[], object]
    check: Callable[[], str | None]


def ensure(
    s3: Any,
    bucket: str,
    account: str,
    region: str,
    tags: dict[str, str],
    kms_key: str | None = None,
) -> bool:
    """Make `bucket` in `account` unless it is there already; True when this call created it."""
    if buckets.exists(s3, bucket, account):
        return False
    create: dict[str, Any] = {"Bucket": bucket, "ObjectOwnership": OWNERSHIP}
    if region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**create)  # CreateBucket alone takes no ExpectedBucketOwner
    except ClientError as exc:
        if (exc.response.get("Error") or {}).get("Code") == "BucketAlreadyExists":
            raise UserError(
                f"bucket {bucket} was just created by another account",
                "pass --bucket with a name of your own",
            ) from exc
        raise
    try:
        for step in _steps(s3, bucket, account, tags, kms_key):
            step.make()
            differs = step.check()
            if differs:
                raise UserError(f"{step.name} did not take: {differs}")
    except BaseException as failure:
        errors.undo_then_raise(
            f"bucket {bucket}",
            "bucket",
            lambda: s3.delete_bucket(Bucket=bucket, **buckets.owner(account)),
            failure,
            UserError,
        )
    return True


def _steps(
    s3: Any, bucket: str, account: str, tags: dict[str, str], kms_key: str | None
) -> list[Step]:
    pin = buckets.owner(account)
    policy = tls_only_policy(bucket)
    rule = encryption_rule(kms_key)
    tag_set = names.as_aws(tags)

    def ownership() -> str | None:
        rules = s3.get_bucket_ownership_controls(Bucket=bucket, **pin)["OwnershipControls"]
        found = [r.get("ObjectOwnership") for r in rules["Rules"]]
        return None if found == [OWNERSHIP] else f"object ownership is {found}"

    def public_access() -> str | None:
        found = s3.get_public_access_block(Bucket=bucket, **pin)
        settings = found["PublicAccessBlockConfiguration"]
        return None if settings == PUBLIC_ACCESS_BLOCK else f"public access block is {settings}"

    def tls_only() -> str | None:
        found = json.loads(s3.get_bucket_policy(Bucket=bucket, **pin)["Policy"])
        return None if found == policy else "the bucket policy reads back changed"

    def encrypted() -> str | None:
        found = s3.get_bucket_encryption(Bucket=bucket, **pin)
        rules = found["ServerSideEncryptionConfiguration"]["Rules"]
        wanted = rule["ApplyServerSideEncryptionByDefault"]
        applied = [r.get("ApplyServerSideEncryptionByDefault") for r in rules]
        return None if applied == [wanted] else f"default encryption is {applied}"

    def tagged() -> str | None:
        found = s3.get_bucket_tagging(Bucket=bucket, **pin)["TagSet"]
        missing = [t for t in tag_set if t not in found]
        return None if not missing else f"tags {missing} are missing"

    return [
        Step("CreateBucket (ObjectOwnership)", lambda: None, ownership),
        Step(
            "PutPublicAccessBlock",
            lambda: s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=dict(PUBLIC_ACCESS_BLOCK), **pin
            ),
            public_access,
        ),
        Step(
            "PutBucketPolicy",
            lambda: s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy), **pin),
            tls_only,
        ),
        Step(
            "PutBucketEncryption",
            lambda: s3.put_bucket_encryption(
                Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]}, **pin
            ),
            encrypted,
        ),
        Step(
            "PutBucketTagging",
            lambda: s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tag_set}, **pin),
            tagged,
        ),
    ]
