"""SageMaker's models, endpoint configs and endpoints: find, tags, tag-checked delete, wait."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from botocore.exceptions import ClientError

from deploy import config
from deploy.aws import ownership, paging
from deploy.aws.not_found import is_not_found
from deploy.aws.waiting import ProgressLine, WaitResult, wait_for

# Statuses after which an update will not reach InService without someone's help.
STUCK = ("UpdateRollbackFailed",)
# kind: (describe call, name parameter, ARN key, delete call)
DESCRIBE = {
    "model": ("describe_model", "ModelName", "ModelArn", "delete_model"),
    "endpoint-config": (
        "describe_endpoint_config",
        "EndpointConfigName",
        "EndpointConfigArn",
        "delete_endpoint_config",
    ),
    "endpoint": ("describe_endpoint", "EndpointName", "EndpointArn", "delete_endpoint"),
}


def log_group(endpoint: str) -> str:
    return config.ENDPOINT_LOG_GROUP.format(name=endpoint)


def logs_hint(endpoint: str, region: str) -> str:
    group = log_group(endpoint)
    return (
        f"the container's logs are in CloudWatch log group {group} "
        f"(aws logs tail {group} --region {region} --since 1h)"
    )


def instances(response: dict[str, Any]) -> str:
    """'current/desired instances' (or 'serverless') from describe_endpoint."""
    variants = response.get("ProductionVariants") or []
    if not variants:
        return ""
    variant = variants[0]
    if "CurrentServerlessConfig" in variant:
        return "serverless"
    current = variant.get("CurrentInstanceCount")
    desired = variant.get("DesiredInstanceCount")
    if current is None and desired is None:
        return ""
    return f"{current if current is not None else 0}/{desired} instances"


def wait_endpoint(
    sm: Any,
    endpoint: str,
    poll: float | None = None,
    timeout: float | None = None,
    stream: IO[str] | None = None,
    detail: Callable[[dict[str, Any]], str] = instances,
) -> WaitResult:
    """Until InService; `detail` words the progress line (rollout.phase during a guarded one)."""
    return wait_for(
        sm,
        "endpoint_in_service",
        {"EndpointName": endpoint},
        label=f"endpoint {endpoint}",
        status_of=lambda r: r.get("EndpointStatus", "?"),
        detail=detail,
        poll=poll,
        timeout=timeout,
        progress=ProgressLine(stream),
        stuck=STUCK,
    )


def find(sm: Any, kind: str, name: str) -> dict[str, Any] | None:
    """The describe call's answer for a model, endpoint config or endpoint; None when absent."""
    describe, key, _, _ = DESCRIBE[kind]
    try:
        found: dict[str, Any] = getattr(sm, describe)(**{key: name})
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return found


def describe_endpoint(sm: Any, name: str) -> dict[str, Any] | None:
    """describe_endpoint, or None when SageMaker has no such endpoint."""
    return find(sm, "endpoint", name)


def tags_of(sm: Any, arn: str) -> list[dict[str, str]]:
    return list(paging.items(sm, "list_tags", "Tags", ResourceArn=arn))


def delete_if_ours(sm: Any, kind: str, name: str) -> ownership.Outcome:
    """'deleted', 'absent' (already gone), or 'refused' (exists, but not tagged by this tool)."""
    _, key, arn_key, delete = DESCRIBE[kind]
    return ownership.delete_if_ours(
        lambda: find(sm, kind, name),
        lambda found: tags_of(sm, found[arn_key]),
        lambda: getattr(sm, delete)(**{key: name}),
    )
