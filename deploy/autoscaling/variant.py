"""The autoscaling interface and what both kinds share: the scalable target of an endpoint
variant in Application Auto Scaling, its removal, and what it looks like now."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from deploy import config, names
from deploy.aws import paging
from deploy.aws.not_found import is_not_found
from deploy.context import Context
from deploy.errors import UserError
from deploy.requests import Call
from deploy.schema import AutoscalingRecord, EndpointRecord

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


@dataclass(frozen=True)
class Settings:
    minimum: int
    maximum: int
    target: float
    scale_in_cooldown: int
    scale_out_cooldown: int


@dataclass(frozen=True)
class Defaults:
    """What `autoscale` uses for an option not given (its --help says the same)."""

    target: float
    scale_in_cooldown: int
    scale_out_cooldown: int


def resource_id(endpoint: str, variant: str = config.VARIANT_NAME) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


class VariantScaling(ABC):
    """Autoscaling of the deployed endpoint's variant: apply, remove, describe."""

    UNIT: ClassVar[str]  # what the target counts, in words
    DEFAULTS: ClassVar[Defaults]

    def __init__(self, ctx: Context, endpoint: EndpointRecord) -> None:
        self.ctx = ctx
        self.endpoint = endpoint  # the state's record (or, without a state, the live one's)

    @abstractmethod
    def apply(self, settings: Settings) -> AutoscalingRecord:
        """Register the target and put the policies; return the state's `autoscaling` record."""

    @abstractmethod
    def recovered(self) -> AutoscalingRecord:
        """The record this kind would have written, from the endpoint's name alone (for
        `down --endpoint` without a state)."""

    @abstractmethod
    def check(self, endpoint: str, settings: Settings) -> None:
        """Refuse (UserError) settings this kind cannot apply to `endpoint`."""

    @abstractmethod
    def requests(self, endpoint: str, settings: Settings, tags: dict[str, str]) -> list[Call]:
        """The calls `apply` makes, in order (`--dry-run` shows them, `template` holds them)."""

    def remove_extras(self, record: AutoscalingRecord) -> bool:
        """What deleting the scalable target leaves behind; True if any was there."""
        return False

    def removal_requests(self, record: AutoscalingRecord) -> list[Call]:
        """The calls `remove` makes for `record` (what is there may be fewer)."""
        common = {"ServiceNamespace": NAMESPACE, "ScalableDimension": DIMENSION}
        rid = record["resource_id"]
        return [
            Call(
                "application-autoscaling",
                "delete_scaling_policy",
                {"PolicyName": record["policy"], "ResourceId": rid, **common},
            ),
            Call(
                "application-autoscaling",
                "deregister_scalable_target",
                {"ResourceId": rid, **common},
            ),
        ]

    def settings(
        self,
        minimum: int,
        maximum: int,
        target: float | None = None,
        scale_in_cooldown: int | None = None,
        scale_out_cooldown: int | None = None,
    ) -> Settings:
        """The settings asked for, this kind's defaults for those not given."""
        return Settings(
            minimum,
            maximum,
            self.DEFAULTS.target if target is None else target,
            self.DEFAULTS.scale_in_cooldown if scale_in_cooldown is None else scale_in_cooldown,
            self.DEFAULTS.scale_out_cooldown if scale_out_cooldown is None else scale_out_cooldown,
        )

    def settings_of(self, record: AutoscalingRecord) -> Settings:
        """The settings a record was applied with (to apply them again)."""
        return self.settings(
            record["min"],
            record["max"],
            record["target"],
            record.get("scale_in_cooldown"),
            record.get("scale_out_cooldown"),
        )

    def remove(self) -> bool:
        """Delete the policies and deregister the target; True if something was there."""
        record = self.ctx.state.get("autoscaling")
        if not record:
            return False
        client = self.ctx.aws.client("application-autoscaling")
        removed = self.remove_extras(record)
        if delete_if_there(
            client, "delete_scaling_policy", record["resource_id"], record["policy"]
        ):
            removed = True
        if delete_if_there(client, "deregister_scalable_target", record["resource_id"]):
            removed = True
        self.ctx.state.pop("autoscaling", None)
        self.ctx.save()
        return removed

    def describe(self) -> dict[str, Any] | None:
        return describe(self.ctx, self.endpoint["name"])

    def register_target(self, minimum: int, maximum: int) -> tuple[Any, str]:
        """Register (or re-register) the variant as a tagged scalable target between `minimum`
        and `maximum` instances; (the Application Auto Scaling client, its resource id)."""
        client = self.ctx.aws.client("application-autoscaling")
        rid = resource_id(self.endpoint["name"], self.endpoint.get("variant", config.VARIANT_NAME))
        tags = self.ctx.state.get("tags") or names.tags_for(self.ctx.name_prefix)
        client.register_scalable_target(**target_request(rid, minimum, maximum, tags))
        return client, rid


def target_request(rid: str, minimum: int, maximum: int, tags: dict[str, str]) -> dict[str, Any]:
    """register_scalable_target's arguments: the variant between `minimum` and `maximum`."""
    return {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": rid,
        "ScalableDimension": DIMENSION,
        "MinCapacity": minimum,
        "MaxCapacity": maximum,
        "Tags": dict(tags),
    }


def require_deployed(ctx: Context) -> EndpointRecord:
    """The state's endpoint, if it is one that can be scaled."""
    endpoint = ctx.state.get("endpoint")
    if not endpoint:
        raise UserError("nothing is deployed in this state", "run `up` first")
    if endpoint.get("serverless"):
        raise UserError(
            "a serverless endpoint scales by itself",
            "change --serverless-concurrency with `update` instead",
        )
    return endpoint


def check_cooldowns(settings: Settings) -> None:
    if settings.scale_in_cooldown < 0 or settings.scale_out_cooldown < 0:
        raise UserError("cooldowns must not be negative")


def delete_if_there(client: Any, call: str, resource: str, policy: str | None = None) -> bool:
    """One Application Auto Scaling delete (`delete_scaling_policy` with the policy's name, or
    `deregister_scalable_target`) on our endpoint variant; False when it was not there."""
    kwargs = {} if policy is None else {"PolicyName": policy}
    try:
        getattr(client, call)(
            ServiceNamespace=NAMESPACE, ResourceId=resource, ScalableDimension=DIMENSION, **kwargs
        )
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        return False
    return True


def describe(ctx: Context, endpoint: str) -> dict[str, Any] | None:
    """The endpoint variant's scalable target and policies as they are now; None without one."""
    client = ctx.aws.client("application-autoscaling")
    rid = resource_id(endpoint)
    common = {"ServiceNamespace": NAMESPACE, "ScalableDimension": DIMENSION}
    targets = list(
        paging.items(
            client, "describe_scalable_targets", "ScalableTargets", ResourceIds=[rid], **common
        )
    )
    if not targets:
        return None
    policies = list(
        paging.items(
            client, "describe_scaling_policies", "ScalingPolicies", ResourceId=rid, **common
        )
    )
    target = targets[0]
    tracking: dict[str, Any] = next(
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
