"""Typed failures and the one place that turns any AWS / botocore error into one readable line.

Exit codes (documented in docs/deploy.md):
  0  success
  1  AWS refused or failed (access denied, quota, throttling, expired credentials, an endpoint or
     job that ended Failed, AWS unreachable) or an external command (docker/podman) failed
  2  the user's input is wrong (arguments, files, missing role/region/state, an AWS
     ValidationException, a resource that this tool did not create and so will not touch)
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NoReturn

from botocore import exceptions as bex

EXIT_OK = 0
EXIT_AWS = 1
EXIT_USER = 2
EXIT_INTERRUPTED = 130

POLICY_HINT = "grant it to the identity running deploy (see iam/deploy-operator-policy.json)"


class DeployError(Exception):
    """A failure reported as one line, without a traceback."""

    exit_code = EXIT_AWS

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        text = self.message.rstrip(". ")
        if self.hint:
            hint = self.hint.rstrip(".")
            text = f"{text}. {hint[:1].upper()}{hint[1:]}"
        return one_line(text) + "."


class UserError(DeployError):
    """The command line, a local file or the state file is wrong: exit 2."""

    exit_code = EXIT_USER


class AwsError(DeployError):
    """AWS said no, or something on AWS ended in failure: exit 1."""

    exit_code = EXIT_AWS


class CommandFailed(DeployError):
    """An external command (docker / podman) exited non-zero: exit 1."""

    exit_code = EXIT_AWS


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


ACCESS_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "Forbidden",
    "403",
}
BAD_CREDENTIALS = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "IncompleteSignature",
    "InvalidSignatureException",
}
EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
}
QUOTA = {"ResourceLimitExceeded", "LimitExceededException", "ServiceQuotaExceededException"}
VALIDATION = {
    "ValidationException",
    "ValidationError",
    "InvalidParameterValue",
    "InvalidParameterException",
    "InvalidParameterCombination",
    "InvalidBucketName",
}
IN_USE = {"ResourceInUse", "ResourceInUseException", "RepositoryAlreadyExistsException"}
NOT_FOUND = {
    "ResourceNotFound",
    "ResourceNotFoundException",
    "RepositoryNotFoundException",
    "NoSuchBucket",
    "NoSuchKey",
    "ObjectNotFoundException",
}


def undo_then_raise(
    what: str,
    noun: str,
    delete: Callable[[], object],
    failure: BaseException,
    kind: type[DeployError] | None = None,
) -> NoReturn:
    """`what` ("bucket NAME") was just made, empty, and a later step of setting it up failed:
    delete it, then report the first failure in one line that says what is left. `kind`: the
    class raised; None: the one `explain` gives (AwsError where it gives none)."""
    try:
        delete()
        left = f"the {noun} was deleted again"
    except Exception as exc:  # the first failure is the one to report; this one is appended
        reason = explain(exc)
        left = f"deleting it failed too ({reason.message if reason else exc}): delete it by hand"
    if not isinstance(failure, Exception):
        raise failure  # Ctrl-C: what was made is gone, the interrupt goes on
    reason = explain(failure)
    said = reason.message if reason else one_line(f"{type(failure).__name__}: {failure}")
    chosen = kind or (type(reason) if reason else AwsError)
    raise chosen(
        f"setting up {what} failed: {said}; {left}", reason.hint if reason else None
    ) from failure


def explain(exc: BaseException) -> DeployError | None:
    """Map a botocore / boto3 exception to a DeployError with what to do; None if unknown."""
    if isinstance(exc, DeployError):
        return exc
    if isinstance(exc, bex.ClientError):
        return _client_error(exc)
    if isinstance(exc, bex.NoRegionError):
        return UserError(
            "no AWS region is set",
            "pass --region, or set AWS_DEFAULT_REGION or a region in your profile",
        )
    if isinstance(exc, bex.ProfileNotFound):
        return UserError(f"{exc}", "check --profile / AWS_PROFILE against ~/.aws/config")
    if isinstance(exc, bex.PartialCredentialsError | bex.NoCredentialsError):
        return AwsError(
            "no AWS credentials were found",
            "run `aws configure` or `aws sso login`, pass --profile, or set AWS_PROFILE",
        )
    if isinstance(exc, bex.TokenRetrievalError | bex.SSOError):
        return AwsError(
            "the SSO session has expired or is missing", "run `aws sso login` and try again"
        )
    if isinstance(exc, bex.CredentialRetrievalError):
        return AwsError(f"could not load AWS credentials: {exc}", "check your profile and role")
    if isinstance(exc, bex.EndpointConnectionError | bex.ConnectTimeoutError):
        url = getattr(exc, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
        return AwsError(
            f"could not reach {url}",
            "check the network, the region, and AWS_ENDPOINT_URL if you set it",
        )
    if isinstance(exc, bex.ReadTimeoutError | bex.ConnectionClosedError):
        return AwsError(f"the connection to AWS failed: {exc}", "check the network and retry")
    if isinstance(exc, bex.ParamValidationError):
        return UserError(f"invalid request: {exc}", "check the command's arguments")
    if isinstance(exc, bex.WaiterError):
        return AwsError(f"waiting failed: {exc}")
    return None


def _client_error(exc: bex.ClientError) -> DeployError:
    error = exc.response.get("Error", {}) or {}
    code = str(error.get("Code") or "Unknown")
    message = one_line(error.get("Message") or "") or code
    op = exc.operation_name or "the request"
    retries = (exc.response.get("ResponseMetadata") or {}).get("RetryAttempts", 0)

    if code in ACCESS_DENIED:
        return AwsError(f"AWS denied {op} ({code}): {message}", POLICY_HINT)
    if code in BAD_CREDENTIALS:
        return AwsError(
            f"AWS rejected the credentials for {op} ({code})",
            "check --profile / AWS_PROFILE or refresh your keys",
        )
    if code in EXPIRED:
        return AwsError(
            f"the AWS credentials have expired ({code} on {op})",
            "refresh them (`aws sso login`, new keys, or run again to re-assume --assume-role)",
        )
    if code in THROTTLED:
        return AwsError(
            f"AWS kept throttling {op} after {retries + 1} attempts ({code})",
            "wait a minute and retry, or raise AWS_MAX_ATTEMPTS / set AWS_RETRY_MODE=adaptive",
        )
    if code in QUOTA:
        return AwsError(
            f"an AWS quota stopped {op} ({code}): {message}",
            "request an increase in Service Quotas (e.g. 'ml.<type> for endpoint usage'), "
            "pick another --instance-type or fewer instances, or delete unused endpoints",
        )
    if code in VALIDATION:
        return UserError(
            f"AWS rejected {op} as invalid: {message}", "fix the argument it names and retry"
        )
    if code in IN_USE:
        return UserError(
            f"{op} failed, the resource is in use or exists already: {message}",
            "wait for the operation in progress, or run `status`",
        )
    if code in NOT_FOUND:
        return UserError(f"{op} failed, not found: {message}", "check the name, region and state")
    if code == "ModelError":
        return AwsError(
            f"the model container returned an error: {message}",
            "see the endpoint's CloudWatch logs (`status` prints the log group)",
        )
    if code in {"ModelNotReadyException", "ServiceUnavailable", "InternalFailure"}:
        return AwsError(f"{op} failed ({code}): {message}", "retry in a minute")
    status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if isinstance(status, int) and status >= 500:
        return AwsError(f"AWS failed on {op} (HTTP {status}, {code})", "retry later")
    return AwsError(f"AWS error on {op} ({code}): {message}")
