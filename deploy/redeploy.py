"""`update`: a new model + config, update_endpoint without downtime, then the old ones removed.

On failure (or a rollback) the new model and config go again and the endpoint keeps its old
ones; autoscaling that had to be paused for an instance type change is put back either way.
"""

from __future__ import annotations

from dataclasses import replace
from typing import IO, Any

from deploy import config, image_check, names, preflight, requests, rollout
from deploy.autoscaling import choose
from deploy.aws.sagemaker import (
    delete_if_ours,
    describe_endpoint,
    instances,
    logs_hint,
    wait_endpoint,
)
from deploy.context import Context
from deploy.deployment import Outcome, create_model_and_config
from deploy.environment import running as running_environment
from deploy.errors import AwsError, UserError
from deploy.requests import Call
from deploy.schema import AutoscalingRecord, EndpointRecord, ResourceKind
from deploy.spec import Spec
from deploy.state import forget, now_iso


def update(
    ctx: Context,
    changes: dict[str, Any],
    wait_poll: float | None = None,
    timeout: float | None = None,
    stream: IO[str] | None = None,
    rollout_plan: rollout.Plan | None = None,
) -> Outcome:
    """`changes` holds only what the user asked to change (Spec field names); everything else is
    carried over from the running deployment, so `update --image NEW` is enough."""
    spec, current, live = _checked(ctx, changes)
    sm = ctx.aws.client("sagemaker")
    endpoint = current["name"]
    autoscaling = ctx.state.get("autoscaling")
    deployment, alarm_names = rollout.prepare(ctx, rollout_plan, spec, endpoint)
    new, tags = _new_names(ctx, current)

    create_model_and_config(ctx, sm, spec, new, tags)

    paused_scaling = None
    if autoscaling and _type_changes(spec, current):
        # Application Auto Scaling rejects an update that changes a scaled variant's type.
        choose.for_endpoint(ctx).remove()
        paused_scaling = autoscaling
        ctx.log("deregistered autoscaling for the instance type change")

    sm.update_endpoint(**requests.update_request(endpoint, new.config, deployment))
    ctx.log(f"updating endpoint {endpoint} to {new.config}; it keeps serving meanwhile")
    detail = rollout.phase if deployment else instances
    result = wait_endpoint(sm, endpoint, wait_poll, timeout, stream, detail=detail)
    live = result.response
    if result.state != "success" or live.get("EndpointConfigName") != new.config:
        reason = live.get("FailureReason") or "SageMaker rolled the update back"
        made: tuple[tuple[ResourceKind, str], ...] = (
            ("endpoint-config", new.config),
            ("model", new.model),
        )
        for kind, name in made:
            if delete_if_ours(sm, kind, name) in ("deleted", "absent"):
                forget(ctx.state, kind, name)
        ctx.save()
        if paused_scaling and not spec.serverless:
            _resume(ctx, paused_scaling)
        alarm_said = rollout.rolled_back(ctx, alarm_names, live)
        raise AwsError(
            f"the update of {endpoint} failed ({live.get('EndpointStatus', '?')}): "
            f"{alarm_said or reason}; "
            f"it still runs {live.get('EndpointConfigName') or current['config']}",
            logs_hint(endpoint, ctx.aws.region),
        )

    deleted = []
    replaced: tuple[tuple[ResourceKind, str], ...] = (
        ("endpoint-config", current["config"]),
        ("model", current["model"]),
    )
    for kind, name in replaced:
        outcome = delete_if_ours(sm, kind, name)
        if outcome in ("deleted", "absent"):
            forget(ctx.state, kind, name)
            deleted.append(name)
        else:
            ctx.log(f"kept {kind} {name}: it is not tagged {config.TAG_KEY}={config.TAG_VALUE}")
    ctx.state["endpoint"] = {
        **current,
        **spec.recorded(),
        "config": new.config,
        "model": new.model,
        "status": live.get("EndpointStatus"),
        "updated_at": now_iso(),
    }
    ctx.save()
    if paused_scaling and not spec.serverless:
        _resume(ctx, paused_scaling)
        ctx.log("registered autoscaling again")
    elif paused_scaling:
        ctx.log("autoscaling removed: serverless endpoints scale by themselves")
    return Outcome(
        endpoint,
        new.config,
        new.model,
        live.get("EndpointStatus", "?"),
        result.seconds,
        deleted=deleted,
    )


def _resume(ctx: Context, record: AutoscalingRecord) -> None:
    """Autoscaling as it was before the update paused it."""
    scaler = choose.for_endpoint(ctx)
    scaler.apply(scaler.settings_of(record))


def plan(
    ctx: Context, changes: dict[str, Any], rollout_plan: rollout.Plan | None = None
) -> list[Call]:
    """`update --dry-run`: the same checks, then the calls `update` would make, in order, when
    it succeeds; nothing is created."""
    spec, current, _ = _checked(ctx, changes)
    endpoint = current["name"]
    deployment, calls = rollout.preview(ctx, rollout_plan, spec, endpoint)
    new, tags = _new_names(ctx, current)
    calls += [
        Call("sagemaker", "create_model", requests.model_request(spec, new.model, tags)),
        Call(
            "sagemaker",
            "create_endpoint_config",
            requests.endpoint_config_request(spec, new.config, new.model, tags),
        ),
    ]
    autoscaling = ctx.state.get("autoscaling")
    paused = bool(autoscaling) and _type_changes(spec, current)
    scaler = choose.for_endpoint(ctx)
    if autoscaling and paused:
        calls += scaler.removal_requests(autoscaling)
    calls += [
        Call(
            "sagemaker",
            "update_endpoint",
            requests.update_request(endpoint, new.config, deployment),
        ),
        Call("sagemaker", "delete_endpoint_config", {"EndpointConfigName": current["config"]}),
        Call("sagemaker", "delete_model", {"ModelName": current["model"]}),
    ]
    if autoscaling and paused and not spec.serverless:
        calls += scaler.requests(endpoint, scaler.settings_of(autoscaling), tags)
    return calls


def _checked(ctx: Context, changes: dict[str, Any]) -> tuple[Spec, EndpointRecord, dict[str, Any]]:
    """Every check before anything is created (they only read): (the Spec to deploy, the
    state's endpoint record, the live endpoint as described)."""
    current = ctx.state.get("endpoint")
    if not current:
        raise UserError("nothing is deployed in this state", "run `up` first")
    asked = "environment" in changes  # the state has the names only: carry over what runs
    kept = {} if asked else running_environment(ctx.aws.client("sagemaker"), current["model"])
    spec = replace(Spec.from_recorded(current, kept), **changes)
    if "instance_type" in changes or "instance_count" in changes:
        spec = replace(spec, serverless_memory=None, serverless_concurrency=None)
    spec.check()
    image_check.check(ctx, spec.image)
    preflight.check(ctx, spec)
    spec = preflight.network_and_key(ctx, spec)
    sm = ctx.aws.client("sagemaker")
    endpoint = current["name"]
    live = describe_endpoint(sm, endpoint)
    if live is None:
        raise UserError(
            f"endpoint {endpoint} no longer exists",
            "run `down` to clear the state, then `up`",
        )
    if live["EndpointStatus"] != "InService":
        raise UserError(
            f"endpoint {endpoint} is {live['EndpointStatus']}, not InService",
            "wait for it (`status`) before updating",
        )
    if ctx.state.get("autoscaling") and "instance_count" not in changes and not spec.serverless:
        # Keep the capacity the autoscaler chose: a new config must not drop instances under load.
        variant = (live.get("ProductionVariants") or [{}])[0]
        spec = replace(spec, instance_count=variant.get("DesiredInstanceCount") or 1)
    return spec, current, live


def _new_names(
    ctx: Context, current: EndpointRecord
) -> tuple[names.DeploymentNames, dict[str, str]]:
    """The new model's and config's names (never the running ones) and their tags."""
    prefix = ctx.name_prefix
    when = names.stamp()
    new = names.deployment(prefix, when, current["name"])
    if new.model == current["model"]:
        new = names.deployment(prefix, f"{when}-2", current["name"])
    return new, ctx.state.get("tags") or names.tags_for(prefix)


def _type_changes(spec: Spec, current: EndpointRecord) -> bool:
    """Application Auto Scaling rejects an update that changes a scaled variant's type."""
    return spec.serverless or spec.instance_type != current.get("instance_type")
