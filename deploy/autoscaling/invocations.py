"""A real-time endpoint: target tracking on SageMakerVariantInvocationsPerInstance.

Each instance is kept near `target` requests per minute. Given a measured throughput (images/s
one instance sustains, from the project's benchmark), the target is 60 * throughput *
utilisation.
"""

from __future__ import annotations

from typing import Any

from deploy.autoscaling.variant import (
    DIMENSION,
    NAMESPACE,
    Defaults,
    Settings,
    VariantScaling,
    check_cooldowns,
    require_deployed,
    resource_id,
    target_request,
)
from deploy.errors import UserError
from deploy.requests import Call
from deploy.schema import AutoscalingRecord
from deploy.state import now_iso

METRIC = "SageMakerVariantInvocationsPerInstance"
DEFAULT_UTILISATION = 0.7


def policy_name(endpoint: str) -> str:
    return f"{endpoint}-invocations"[:256]


def target_from_throughput(throughput: float, utilisation: float = DEFAULT_UTILISATION) -> float:
    """Invocations per instance per minute that keep an instance at `utilisation` of capacity."""
    if throughput <= 0:
        raise UserError("--throughput must be positive (images per second per instance)")
    return round(throughput * 60 * utilisation, 1)


def policy_request(endpoint: str, settings: Settings, rid: str | None = None) -> dict[str, Any]:
    """put_scaling_policy's arguments: target tracking on invocations per instance."""
    return {
        "PolicyName": policy_name(endpoint),
        "ServiceNamespace": NAMESPACE,
        "ResourceId": rid or resource_id(endpoint),
        "ScalableDimension": DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(settings.target),
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleInCooldown": settings.scale_in_cooldown,
            "ScaleOutCooldown": settings.scale_out_cooldown,
        },
    }


class InvocationsScaling(VariantScaling):
    UNIT = "invocations per instance per minute"
    DEFAULTS = Defaults(target=200.0, scale_in_cooldown=300, scale_out_cooldown=60)

    def check(self, endpoint: str, settings: Settings) -> None:
        minimum, maximum, target = settings.minimum, settings.maximum, settings.target
        if minimum == 0:
            raise UserError(
                f"--min 0 needs an asynchronous endpoint: {endpoint} is real-time and "
                "always keeps an instance",
                "deploy with `up --async --output s3://...` to scale to zero",
            )
        if not 1 <= minimum <= maximum:
            raise UserError(f"need 1 <= --min ({minimum}) <= --max ({maximum})")
        if target <= 0:
            raise UserError("--target must be positive (invocations per instance per minute)")
        check_cooldowns(settings)

    def requests(self, endpoint: str, settings: Settings, tags: dict[str, str]) -> list[Call]:
        rid = resource_id(endpoint)
        return [
            Call(
                "application-autoscaling",
                "register_scalable_target",
                target_request(rid, settings.minimum, settings.maximum, tags),
            ),
            Call(
                "application-autoscaling", "put_scaling_policy", policy_request(endpoint, settings)
            ),
        ]

    def apply(self, settings: Settings) -> AutoscalingRecord:
        endpoint = require_deployed(self.ctx)
        self.check(endpoint["name"], settings)
        client, rid = self.register_target(settings.minimum, settings.maximum)
        policy = policy_name(endpoint["name"])
        arn = client.put_scaling_policy(**policy_request(endpoint["name"], settings, rid))[
            "PolicyARN"
        ]
        minimum, maximum, target = settings.minimum, settings.maximum, settings.target
        record: AutoscalingRecord = {
            "resource_id": rid,
            "mode": "invocations",
            "min": minimum,
            "max": maximum,
            "target": float(target),
            "scale_in_cooldown": settings.scale_in_cooldown,
            "scale_out_cooldown": settings.scale_out_cooldown,
            "policy": policy,
            "policy_arn": arn,
            "updated_at": now_iso(),
        }
        self.ctx.state["autoscaling"] = record
        self.ctx.save()
        return record

    def recovered(self) -> AutoscalingRecord:
        name = self.endpoint["name"]
        return {"resource_id": resource_id(name), "policy": policy_name(name)}
