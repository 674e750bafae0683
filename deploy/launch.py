"""`up`: a new model, endpoint config and endpoint, each recorded as it is made; then wait.
(`plan`: the same checks, and the calls it would make.)"""

from __future__ import annotations

from dataclasses import replace
from typing import IO

from deploy import config, image_scan, names, preflight, requests
from deploy.aws.sagemaker import logs_hint, wait_endpoint
from deploy.aws.waiting import elapsed
from deploy.context import Context
from deploy.deployment import Outcome, create_model_and_config
from deploy.errors import AwsError, UserError
from deploy.requests import Call
from deploy.spec import Spec
from deploy.state import now_iso, remember


def checked(
    ctx: Context,
    spec: Spec,
    endpoint_name: str | None,
    user_tags: dict[str, str] | None,
    allow_vulnerabilities: bool = False,
    read_only: bool = False,
) -> tuple[Spec, str, names.DeploymentNames, dict[str, str]]:
    """Every check `up` makes before it creates anything (they only read); (the Spec with its key
    resolved and its image pinned by digest, prefix, the names of what it would create, their
    tags). `read_only` (--dry-run): not even an image scan is started."""
    current = ctx.state.get("endpoint")
    if current:
        raise UserError(
            f"this state already holds endpoint {current['name']}",
            "run `update` to change it, `down` to remove it, or pass another --state",
        )
    spec.check()
    prefix = names.check_prefix(ctx.name_prefix)
    pinned = image_scan.vet(ctx, spec.image, allow_vulnerabilities, read_only)
    spec = replace(spec, pinned_image=pinned if pinned != spec.image else None)
    preflight.check(ctx, spec)
    spec = preflight.network_and_key(ctx, spec)
    if endpoint_name:
        names.check_name(endpoint_name, "--endpoint-name")
    found = names.deployment(prefix, names.stamp(), endpoint_name)
    return spec, prefix, found, names.tags_for(prefix, user_tags)


def plan(
    ctx: Context,
    spec: Spec,
    endpoint_name: str | None = None,
    user_tags: dict[str, str] | None = None,
    allow_vulnerabilities: bool = False,
) -> list[Call]:
    """`up --dry-run`: the checks, then the calls `up` would make; nothing is created."""
    spec, _, found, tags = checked(
        ctx, spec, endpoint_name, user_tags, allow_vulnerabilities, read_only=True
    )
    return [
        Call("sagemaker", "create_model", requests.model_request(spec, found.model, tags)),
        Call(
            "sagemaker",
            "create_endpoint_config",
            requests.endpoint_config_request(spec, found.config, found.model, tags),
        ),
        Call(
            "sagemaker",
            "create_endpoint",
            requests.endpoint_request(found.endpoint, found.config, tags),
        ),
    ]


def up(
    ctx: Context,
    spec: Spec,
    endpoint_name: str | None = None,
    user_tags: dict[str, str] | None = None,
    wait: bool = True,
    poll: float | None = None,
    timeout: float | None = None,
    stream: IO[str] | None = None,
    allow_vulnerabilities: bool = False,
) -> Outcome:
    spec, prefix, found, tags = checked(ctx, spec, endpoint_name, user_tags, allow_vulnerabilities)
    sm = ctx.aws.client("sagemaker")
    ctx.state["prefix"] = prefix
    ctx.state["tags"] = tags

    create_model_and_config(ctx, sm, spec, found, tags)

    endpoint_arn = sm.create_endpoint(
        **requests.endpoint_request(found.endpoint, found.config, tags)
    )["EndpointArn"]
    remember(ctx.state, "endpoint", found.endpoint, endpoint_arn)
    ctx.state["endpoint"] = {
        "name": found.endpoint,
        "arn": endpoint_arn,
        "config": found.config,
        "model": found.model,
        "variant": config.VARIANT_NAME,
        **spec.recorded(),
        "created_at": now_iso(),
        "updated_at": now_iso(),
    }
    ctx.save()
    ctx.log(f"creating endpoint {found.endpoint} (this takes a few minutes)")
    if not wait:
        return Outcome(found.endpoint, found.config, found.model, "Creating", waited=False)

    result = wait_endpoint(sm, found.endpoint, poll, timeout, stream)
    status = result.response.get("EndpointStatus", "?")
    ctx.state["endpoint"]["status"] = status
    ctx.save()
    if result.state != "success":
        reason = result.response.get("FailureReason") or "no reason given"
        raise AwsError(
            f"endpoint {found.endpoint} is {status} after {elapsed(result.seconds)}: {reason}",
            f"{logs_hint(found.endpoint, ctx.aws.region)}; remove it with `python -m deploy down`",
        )
    return Outcome(found.endpoint, found.config, found.model, status, result.seconds)
