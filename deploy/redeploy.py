"""`update`: a new model + config, update_endpoint without downtime, then the old ones removed.

A transaction (the marks and their settling are deploy/update_steps): on a rollback, a refused
update_endpoint, a wait that times out, expired credentials or Ctrl-C, the new model and config
go again when SageMaker never took them, or stay recorded (pending) while it may still run them;
autoscaling paused for an instance type change is put back, or stays marked paused for `status`
to put back once the endpoint is InService; the state names the config that serves.
"""

from __future__ import annotations

from dataclasses import replace
from enum import Enum
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from deploy import image_scan, names, preflight, requests, rollout, update_steps
from deploy.autoscaling import choose
from deploy.aws.sagemaker import describe_endpoint, instances, logs_hint, wait_endpoint
from deploy.context import Context
from deploy.deployment import Outcome, create_model_and_config
from deploy.environment import running as running_environment
from deploy.errors import AwsError, DeployError, UserError, explain
from deploy.requests import Call
from deploy.schema import EndpointRecord
from deploy.spec import Spec


def update(
    ctx: Context,
    changes: dict[str, Any],
    wait_poll: float | None = None,
    timeout: float | None = None,
    stream: IO[str] | None = None,
    rollout_plan: rollout.Plan | None = None,
    allow_vulnerabilities: bool = False,
) -> Outcome:
    """`changes` holds only what the user asked to change (Spec field names); everything else is
    carried over from the running deployment, so `update --image NEW` is enough."""
    if not ctx.state.get("endpoint"):
        raise UserError("nothing is deployed in this state", "run `up` first")
    sm = ctx.aws.client("sagemaker")
    update_steps.reconcile(ctx, sm)  # what an interrupted update left, first
    spec, current, live = _checked(ctx, changes, allow_vulnerabilities)
    endpoint = current["name"]
    autoscaling = ctx.state.get("autoscaling")
    deployment, alarm_names = rollout.prepare(ctx, rollout_plan, spec, endpoint)
    new, tags = _new_names(ctx, current)

    sent = Sent.NO
    update_steps.mark_pending(ctx, new, spec)
    try:
        create_model_and_config(ctx, sm, spec, new, tags)
        if autoscaling and _type_changes(spec, current):
            update_steps.pause_autoscaling(ctx)
        sent = Sent.MAYBE
        try:
            sm.update_endpoint(**requests.update_request(endpoint, new.config, deployment))
        except ClientError:
            sent = Sent.NO  # SageMaker answered no: it will never run the new config
            raise
        sent = Sent.YES
        ctx.log(f"updating endpoint {endpoint} to {new.config}; it keeps serving meanwhile")
        detail = rollout.phase if deployment else instances
        result = wait_endpoint(sm, endpoint, wait_poll, timeout, stream, detail=detail)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_recover(ctx, sm, sent)) from None
    except Exception as exc:
        said = _recover(ctx, sm, sent)
        error = explain(exc)
        if error is None:
            ctx.log(f"the update stopped: {said}")
            raise
        raise type(error)(f"{error.message}; {said}", error.hint) from exc

    live = result.response
    if result.state != "success" or live.get("EndpointConfigName") != new.config:
        reason = live.get("FailureReason") or "SageMaker rolled the update back"
        update_steps.settle(ctx, sm, live)
        alarm_said = rollout.rolled_back(ctx, alarm_names, live)
        raise AwsError(
            f"the update of {endpoint} failed ({live.get('EndpointStatus', '?')}): "
            f"{alarm_said or reason}; "
            f"it still runs {live.get('EndpointConfigName') or current['config']}; "
            f"{update_steps.left(ctx, serving=False)}",
            logs_hint(endpoint, ctx.aws.region),
        )

    deleted = update_steps.adopt(ctx, sm, live)
    update_steps.restore_autoscaling(ctx)
    return Outcome(
        endpoint,
        new.config,
        new.model,
        live.get("EndpointStatus", "?"),
        result.seconds,
        deleted=deleted,
    )


def plan(
    ctx: Context,
    changes: dict[str, Any],
    rollout_plan: rollout.Plan | None = None,
    allow_vulnerabilities: bool = False,
) -> list[Call]:
    """`update --dry-run`: the same checks, then the calls `update` would make, in order, when
    it succeeds; nothing is created."""
    spec, current, _ = _checked(ctx, changes, allow_vulnerabilities, read_only=True)
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


def _checked(
    ctx: Context,
    changes: dict[str, Any],
    allow_vulnerabilities: bool = False,
    read_only: bool = False,
) -> tuple[Spec, EndpointRecord, dict[str, Any]]:
    """Every check before anything is created (they only read; but for an image scan started
    where none exists, unless `read_only`): (the Spec to deploy, its image pinned by the digest
    ECR holds now, the state's endpoint record, the live endpoint)."""
    current = ctx.state.get("endpoint")
    if not current:
        raise UserError("nothing is deployed in this state", "run `up` first")
    asked = "environment" in changes  # the state has the names only: carry over what runs
    kept = {} if asked else running_environment(ctx.aws.client("sagemaker"), current["model"])
    spec = replace(Spec.from_recorded(current, kept), **changes)
    if "instance_type" in changes or "instance_count" in changes:
        spec = replace(spec, serverless_memory=None, serverless_concurrency=None)
    spec.check()
    pinned = image_scan.vet(ctx, spec.image, allow_vulnerabilities, read_only)
    spec = replace(spec, pinned_image=pinned if pinned != spec.image else None)
    if spec.pinned_image and current.get("pinned_image") not in (None, spec.pinned_image):
        ctx.log(f"update: image digest -> {spec.pinned_image.rpartition('@')[2]}")
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


class Sent(Enum):
    """Whether SageMaker took the update_endpoint request."""

    NO = "no"
    MAYBE = "maybe"  # interrupted or cut off while the request was on its way
    YES = "yes"


def _recover(ctx: Context, sm: Any, sent: Sent) -> str:
    """After a failure or Ctrl-C: settle what can be settled now (the new model and config
    removed if never taken, autoscaling put back); what remains stays marked in the state for
    `status`. Returns what is left and how to finish it, in words."""
    try:
        if sent is Sent.NO:
            update_steps.drop(ctx, sm)
            update_steps.restore_autoscaling(ctx)
        else:
            live = describe_endpoint(sm, ctx.state["endpoint"]["name"])
            if live is not None:
                update_steps.settle(ctx, sm, live)
    except (ClientError, BotoCoreError, DeployError) as exc:
        # Credentials expired, throttling, no network: the marks stay for `status` to settle.
        error = explain(exc)
        return f"{update_steps.left(ctx)} (not now: {error.message if error else exc})"
    return update_steps.left(ctx)
