"""An asynchronous endpoint, down to zero instances and back (AWS's pattern).

- Target tracking on the queue: `ApproximateBacklogSizePerInstance` (AWS/SageMaker, per endpoint)
  held at `target` requests per instance; with MinCapacity 0 it scales in to zero once the queue
  is empty.
- Target tracking never leaves zero by itself (there is no instance to divide the backlog by), so a
  step-scaling policy adds one instance when the CloudWatch alarm on `HasBacklogWithoutCapacity`
  (1 while requests wait and no instance runs) fires.

`down` and `autoscale --off` remove both policies, the alarm and the scalable target.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from deploy import alarms, names
from deploy.autoscaling.variant import (
    DIMENSION,
    NAMESPACE,
    Defaults,
    Settings,
    VariantScaling,
    check_cooldowns,
    delete_if_there,
    require_deployed,
    resource_id,
    target_request,
)
from deploy.context import Context
from deploy.errors import UserError
from deploy.requests import Call
from deploy.schema import AutoscalingRecord
from deploy.state import now_iso

METRIC_NAMESPACE = "AWS/SageMaker"
BACKLOG_PER_INSTANCE = "ApproximateBacklogSizePerInstance"
BACKLOG = "ApproximateBacklogSize"
NO_CAPACITY = "HasBacklogWithoutCapacity"


def tracking_policy(endpoint: str) -> str:
    return f"{endpoint}-backlog"[:256]


def step_policy(endpoint: str) -> str:
    return f"{endpoint}-scale-from-zero"[:256]


def alarm_name(endpoint: str) -> str:
    return f"{endpoint}-backlog-without-capacity"[:255]


def _dimensions(endpoint: str) -> list[dict[str, str]]:
    return [{"Name": "EndpointName", "Value": endpoint}]


# put_metric_alarm names the step policy's ARN, known once it exists (`template`: a Ref).
STEP_ARN = "(the step policy's PolicyARN)"


def tracking_request(endpoint: str, rid: str, settings: Settings) -> dict[str, Any]:
    """put_scaling_policy's arguments: target tracking on the backlog per instance."""
    return {
        "PolicyName": tracking_policy(endpoint),
        "ServiceNamespace": NAMESPACE,
        "ResourceId": rid,
        "ScalableDimension": DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(settings.target),
            "CustomizedMetricSpecification": {
                "MetricName": BACKLOG_PER_INSTANCE,
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": _dimensions(endpoint),
                "Statistic": "Average",
            },
            "ScaleInCooldown": settings.scale_in_cooldown,
            "ScaleOutCooldown": settings.scale_out_cooldown,
        },
    }


def step_request(endpoint: str, rid: str, settings: Settings) -> dict[str, Any]:
    """put_scaling_policy's arguments: +1 instance from zero when requests wait."""
    return {
        "PolicyName": step_policy(endpoint),
        "ServiceNamespace": NAMESPACE,
        "ResourceId": rid,
        "ScalableDimension": DIMENSION,
        "PolicyType": "StepScaling",
        "StepScalingPolicyConfiguration": {
            "AdjustmentType": "ChangeInCapacity",
            "MetricAggregationType": "Average",
            "Cooldown": settings.scale_out_cooldown,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
        },
    }


def alarm_request(endpoint: str, step_arn: str, tags: dict[str, str]) -> dict[str, Any]:
    """put_metric_alarm's arguments: HasBacklogWithoutCapacity sets off the step policy."""
    return {
        "AlarmName": alarm_name(endpoint),
        "AlarmDescription": f"{endpoint}: requests wait and no instance runs; add one",
        "Namespace": METRIC_NAMESPACE,
        "MetricName": NO_CAPACITY,
        "Dimensions": _dimensions(endpoint),
        "Statistic": "Average",
        "Period": 60,
        "EvaluationPeriods": 2,
        "DatapointsToAlarm": 2,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "missing",
        "AlarmActions": [step_arn],
        "Tags": names.as_aws(tags),
    }


class BacklogScaling(VariantScaling):
    UNIT = "queued requests per instance"
    DEFAULTS = Defaults(target=5.0, scale_in_cooldown=600, scale_out_cooldown=300)  # AWS's example

    def check(self, endpoint: str, settings: Settings) -> None:
        minimum, maximum, target = settings.minimum, settings.maximum, settings.target
        if not 0 <= minimum <= maximum or maximum < 1:
            raise UserError(f"need 0 <= --min ({minimum}) <= --max ({maximum}) and --max >= 1")
        if target <= 0:
            raise UserError("--target must be positive (queued requests per instance)")
        check_cooldowns(settings)

    def requests(self, endpoint: str, settings: Settings, tags: dict[str, str]) -> list[Call]:
        rid = resource_id(endpoint)
        service = "application-autoscaling"
        calls = [
            Call(
                service,
                "register_scalable_target",
                target_request(rid, settings.minimum, settings.maximum, tags),
            ),
            Call(service, "put_scaling_policy", tracking_request(endpoint, rid, settings)),
        ]
        if settings.minimum == 0:
            calls += [
                Call(service, "put_scaling_policy", step_request(endpoint, rid, settings)),
                Call("cloudwatch", "put_metric_alarm", alarm_request(endpoint, STEP_ARN, tags)),
            ]
        return calls

    def apply(self, settings: Settings) -> AutoscalingRecord:
        ctx = self.ctx
        endpoint = require_deployed(ctx)
        name = endpoint["name"]
        self.check(name, settings)
        minimum, maximum, target = settings.minimum, settings.maximum, settings.target
        previous = ctx.state.get("autoscaling") or {}
        if minimum > 0:
            self.remove_extras(previous)  # no longer at zero: nothing needs to bring it back
        client, rid = self.register_target(minimum, maximum)
        tags = ctx.state.get("tags") or names.tags_for(ctx.name_prefix)  # the target's, too
        record: AutoscalingRecord = {
            "resource_id": rid,
            "mode": "backlog",
            "min": minimum,
            "max": maximum,
            "target": float(target),
            "scale_in_cooldown": settings.scale_in_cooldown,
            "scale_out_cooldown": settings.scale_out_cooldown,
            "policy": tracking_policy(name),
            "step_policy": None,
            "alarm": None,
            "updated_at": now_iso(),
        }
        # Recorded before the policies exist: an interrupted `autoscale` is still undone by `down`.
        ctx.state["autoscaling"] = record
        ctx.save()
        record["policy_arn"] = client.put_scaling_policy(**tracking_request(name, rid, settings))[
            "PolicyARN"
        ]
        ctx.save()
        if minimum == 0:
            record["step_policy"] = step_policy(name)
            ctx.save()
            step_arn = client.put_scaling_policy(**step_request(name, rid, settings))["PolicyARN"]
            record["alarm"] = alarm_name(name)
            ctx.save()
            ctx.aws.client("cloudwatch").put_metric_alarm(**alarm_request(name, step_arn, tags))
        ctx.save()
        return record

    def removal_requests(self, record: AutoscalingRecord) -> list[Call]:
        calls = []
        if record.get("step_policy"):
            calls.append(
                Call(
                    "application-autoscaling",
                    "delete_scaling_policy",
                    {
                        "PolicyName": record["step_policy"],
                        "ServiceNamespace": NAMESPACE,
                        "ResourceId": record["resource_id"],
                        "ScalableDimension": DIMENSION,
                    },
                )
            )
        if record.get("alarm"):
            calls.append(Call("cloudwatch", "delete_alarms", {"AlarmNames": [record["alarm"]]}))
        return calls + super().removal_requests(record)

    def remove_extras(self, record: AutoscalingRecord) -> bool:
        """The step policy and the alarm (tag-checked). Application Auto Scaling deletes a
        target's policies with it, but not our own alarm."""
        removed = False
        client = self.ctx.aws.client("application-autoscaling")
        if record.get("step_policy") and delete_if_there(
            client, "delete_scaling_policy", record["resource_id"], record["step_policy"]
        ):
            removed = True
        alarm = record.get("alarm")
        if alarm and alarms.delete_ours(self.ctx, [alarm]):
            removed = True
        return removed

    def recovered(self) -> AutoscalingRecord:
        name = self.endpoint["name"]
        return {
            "resource_id": resource_id(name),
            "policy": tracking_policy(name),
            "step_policy": step_policy(name),
            "alarm": alarm_name(name),
        }


def backlog(ctx: Context, endpoint: str, minutes: int = 15) -> float | None:
    """The latest ApproximateBacklogSize (requests queued), or None without recent data."""
    end = dt.datetime.now(dt.UTC)
    answer = ctx.aws.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "backlog",
                "MetricStat": {
                    "Metric": {
                        "Namespace": METRIC_NAMESPACE,
                        "MetricName": BACKLOG,
                        "Dimensions": _dimensions(endpoint),
                    },
                    "Period": 60,
                    "Stat": "Average",
                },
            }
        ],
        StartTime=end - dt.timedelta(minutes=minutes),
        EndTime=end,
        ScanBy="TimestampDescending",
    )
    values = (answer.get("MetricDataResults") or [{}])[0].get("Values") or []
    return float(values[0]) if values else None
