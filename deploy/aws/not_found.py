"""The one answer to "does this AWS error mean the resource is absent?".

Each service says it its own way; since a client only ever hears its own service's codes, one
set covers them all without one service's wording being mistaken for another's.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

NOT_FOUND_CODES = frozenset(
    {
        "ResourceNotFound",  # SageMaker
        "ResourceNotFoundException",  # SageMaker, CloudWatch Logs
        "RepositoryNotFoundException",  # ECR
        "ImageNotFoundException",  # ECR
        "ObjectNotFoundException",  # Application Auto Scaling
        "NoSuchBucket",  # S3
        "NoSuchKey",  # S3 (GET)
        "404",  # S3 (HEAD: no body, so only the status)
        "NotFound",  # S3 HEAD as some clients word it, SNS
        "NotFoundException",  # SNS
    }
)


def is_not_found(exc: BaseException) -> bool:
    """True when `exc` is a ClientError that says the resource does not exist.

    SageMaker also answers ValidationException "Could not find ..." for a missing endpoint,
    config or model, and Application Auto Scaling (and its emulators) ValidationException
    "No ... found" for a missing target or policy.
    """
    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {}) or {}
    code = str(error.get("Code") or "")
    if code in NOT_FOUND_CODES:
        return True
    message = str(error.get("Message") or "")
    return code == "ValidationException" and (
        "Could not find" in message or "found" in message.lower()
    )
