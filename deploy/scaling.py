"""`autoscale`: the endpoint variant as an Application Auto Scaling target, tracking invocations.

Target tracking on SageMakerVariantInvocationsPerInstance keeps each instance near `target`
requests per minute. Given a measured throughput (images/s one instance sustains, from the
project's benchmark), the target is 60 * throughput * utilisation.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from deploy import config, names
from deploy.errors import UserError
from deploy.state import now_iso

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
DEFAULT_UTILISATION = 0.7


def resource_id(endpoint: str, variant: str = config.VARIANT_NAME) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def policy_name(endpoint: str) -> str:
    return f"{endpoint}-invocations"[:256]


def target_from_throughput(throughput: float, utilisation: float = DEFAULT_UTILISATION) -> float:
    """Invocations per instance per minute that keep an instance at `utilisation` of capacity."""
    if throughput <= 0:
        raise UserError("--throughput must be positive (images per second per instance)")
    return round(throughput * 60 * utilisation, 1)


def settings_of(record: dict) -> dict:
    return {
        "minimum": record["min"],
        "maximum": record["max"],
        "target": record["target"],
        "scale_in_cooldown": record.get("scale_in_cooldown", 300),
        "scale_out_cooldown": record.get("scale_out_cooldown", 60),
    }


def apply(
    ctx,
    minimum: int,
    maximum: int,
    target: float,
    scale_in_cooldown: int = 300,
    scale_out_cooldown: int = 60,
) -> dict:
    endpoint = ctx.state.get("endpoint")
    if not endpoint:
        raise UserError("nothing is deployed in this state", "run `up` first")
    if endpoint.get("serverless"):
        raise UserError(
            "a serverless endpoint scales by itself",
            "change --serverless-concurrency with `update` instead",
        )
    if endpoint.get("async_inference"):
        from deploy import scale_to_zero  # it imports this module

        return scale_to_zero.apply(
            ctx, minimum, maximum, target, scale_in_cooldown, scale_out_cooldown
        )
    if minimum == 0:
        raise UserError(
            f"--min 0 needs an asynchronous endpoint: {endpoint['name']} is real-time and always "
            "keeps an instance",
            "deploy with `up --async --output s3://...` to scale to zero",
        )
    if not 1 <= minimum <= maximum:
        raise UserError(f"need 1 <= --min ({minimum}) <= --max ({maximum})")
    if target <= 0:
        raise UserError("--target must be positive (invocations per instance per minute)")
    if scale_in_cooldown < 0 or scale_out_cooldown < 0:
        raise UserError("cooldowns must not be negative")
    client, rid = register_target(ctx, endpoint, minimum, maximum)
    policy = policy_name(endpoint["name"])
    arn = client.put_scaling_policy(
        PolicyName=policy,
        ServiceNamespace=NAMESPACE,
        ResourceId=rid,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(target),
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleInCooldown": scale_in_cooldown,
            "ScaleOutCooldown": scale_out_cooldown,
        },
    )["PolicyARN"]
    record = {
        "resource_id": rid,
        "min": minimum,
        "max": maximum,
        "target": float(target),
        "scale_in_cooldown": scale_in_cooldown,
        "scale_out_cooldown": scale_out_cooldown,
        "policy": policy,
        "policy_arn": arn,
        "updated_at": now_iso(),
    }
    ctx.state["autoscaling"] = record
    ctx.save()
    return record


def register_target(ctx, endpoint: dict, minimum: int, maximum: int) -> tuple[Any, str]:
    """Register (or re-register) the endpoint's variant as a tagged scalable target between
    `minimum` and `maximum` instances; (the Application Auto Scaling client, its resource id)."""
    client = ctx.aws.client("application-autoscaling")
    rid = resource_id(endpoint["name"], endpoint.get("variant", config.VARIANT_NAME))
    client.register_scalable_target(
        ServiceNamespace=NAMESPACE,
        ResourceId=rid,
        ScalableDimension=DIMENSION,
        MinCapacity=minimum,
        MaxCapacity=maximum,
        Tags=ctx.state.get("tags") or names.tags_for(ctx.name_prefix),
    )
    return client, rid


def remove(ctx) -> bool:
    """Delete the policy and deregister the target; True if something was there. Idempotent."""
    record = ctx.state.get("autoscaling")
    if not record:
        return False
    client = ctx.aws.client("application-autoscaling")
    removed = False
    if record.get("step_policy") or record.get("alarm"):
        from deploy import scale_to_zero  # it imports this module

        removed = scale_to_zero.remove_extras(ctx, record)
    if delete_if_there(client, "delete_scaling_policy", record["resource_id"], record["policy"]):
        removed = True
    if delete_if_there(client, "deregister_scalable_target", record["resource_id"]):
        removed = True
    ctx.state.pop("autoscaling", None)
    ctx.save()
    return removed


def delete_if_there(client, call: str, resource: str, policy: str | None = None) -> bool:
    """One Application Auto Scaling delete (`delete_scaling_policy` with the policy's name, or
    `deregister_scalable_target`) on our endpoint variant; False when it was not there."""
    kwargs = {} if policy is None else {"PolicyName": policy}
    try:
        getattr(client, call)(
            ServiceNamespace=NAMESPACE, ResourceId=resource, ScalableDimension=DIMENSION, **kwargs
        )
    except ClientError as exc:
        if not absent(exc):
            raise
        return False
    return True


def absent(exc: ClientError) -> bool:
    """AWS says ObjectNotFoundException; some emulators say ValidationException "No ... found"."""
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", "")
    return code == "ObjectNotFoundException" or (
        code == "ValidationException" and "found" in message.lower()
    )


def describe(ctx, endpoint: str) -> dict | None:
    client = ctx.aws.client("application-autoscaling")
    rid = resource_id(endpoint)
    targets = client.describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=[rid], ScalableDimension=DIMENSION
    )["ScalableTargets"]
    if not targets:
        return None
    policies = client.describe_scaling_policies(
        ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION
    )["ScalingPolicies"]
    target = targets[0]
    tracking = next(
        (
            p["TargetTrackingScalingPolicyConfiguration"]
            for p in policies
            if p.get("PolicyType") == "TargetTrackingScaling"
        ),
        {},
    )
    predefined = tracking.get("PredefinedMetricSpecification") or {}
    customized = tracking.get("CustomizedMetricSpecification") or {}
    metric = predefined.get("PredefinedMetricType") or customized.get("MetricName")
    return {
        "min": target["MinCapacity"],
        "max": target["MaxCapacity"],
        "target": tracking.get("TargetValue"),
        "metric": metric,
        "step_policies": sum(p.get("PolicyType") == "StepScaling" for p in policies),
    }
