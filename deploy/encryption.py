"""`--kms-key ARN|alias/NAME`: the customer-managed key that SageMaker, S3 and ECR encrypt with.

Checked with kms:DescribeKey before anything is created, because every service that takes a key
id accepts a wrong one and fails later (an endpoint minutes into Creating, an upload mid-way).
The key must exist, be enabled, be a symmetric encryption key (SageMaker, S3 SSE-KMS and ECR
take no other kind) and live in the deployment's region (a KMS key is regional). What is
recorded and sent is the resolved key ARN: an alias can be re-pointed later, the ARN cannot.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError

from deploy.errors import UserError

KEY_ARN = re.compile(r"^arn:aws[\w-]*:kms:([a-z0-9-]+):(\d{12}):(key|alias)/[\w/+=,.@-]+$")
ALIAS = re.compile(r"^alias/[\w/+=,.@-]+$")
KEY_ID = re.compile(r"^(mrk-)?[0-9a-f-]{32,36}$")
# Instance families whose ML storage is a local NVMe instance store: SageMaker refuses a volume
# key for them (CreateEndpointConfig "KmsKeyId"). The "d" families (ml.c5d, ml.m5d, ml.r5d,
# ml.g4dn, ml.p3dn, ml.p4d, ml.c6id, ...) by their name, and these by list.
NVME_FAMILIES = frozenset({"g5", "g6", "g6e", "p5", "p5e", "p5en", "inf2", "trn1", "trn1n"})
D_FAMILY = re.compile(r"^[a-z]+\d+[a-z]*d[a-z]*$")


def resolve(kms: Any, key: str, region: str) -> str:
    """The ARN of `key` (a key or alias ARN, alias/NAME or a key id), checked usable here."""
    match = KEY_ARN.match(key)
    if match and match.group(1) != region:
        raise UserError(
            f"--kms-key {key} is in {match.group(1)}, not {region}",
            "a KMS key is regional: use one (or a multi-Region replica) in the deployment's region",
        )
    if not (match or ALIAS.match(key) or KEY_ID.match(key)):
        raise UserError(f"--kms-key {key!r} is not a key ARN, alias/NAME or key id")
    try:
        metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NotFoundException", "InvalidArnException"):
            raise UserError(
                f"--kms-key {key} does not exist in {region}",
                "list keys with `aws kms list-aliases`",
            ) from None
        raise
    arn = str(metadata["Arn"])
    state = metadata.get("KeyState") or ("Enabled" if metadata.get("Enabled") else "Disabled")
    if state != "Enabled":
        raise UserError(f"--kms-key {key} is {state}", "enable it, or pass another key")
    spec = metadata.get("KeySpec") or metadata.get("CustomerMasterKeySpec")
    usage = metadata.get("KeyUsage") or "ENCRYPT_DECRYPT"  # KMS's default when it omits it
    if spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT":
        raise UserError(
            f"--kms-key {key} is a {spec} {usage} key",
            "SageMaker, S3 and ECR need a symmetric encryption key (SYMMETRIC_DEFAULT)",
        )
    return arn


def has_local_nvme(instance_type: str) -> bool:
    """True for instance types whose storage is local NVMe (no volume key allowed)."""
    parts = instance_type.split(".")
    family = parts[1] if len(parts) == 3 and parts[0] == "ml" else ""
    return family in NVME_FAMILIES or bool(D_FAMILY.match(family))


def sse_kms(key: str | None) -> dict[str, str]:
    """S3 upload arguments for SSE-KMS with `key` ({} without one: the bucket's default)."""
    if not key:
        return {}
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key}
