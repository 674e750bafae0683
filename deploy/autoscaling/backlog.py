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
)
from deploy.context import Context
from deploy.errors import UserError
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


class BacklogScaling(VariantScaling):
    UNIT = "queued requests per instance"
    DEFAULTS = Defaults(target=5.0, scale_in_cooldown=600, scale_out_cooldown=300)  # AWS's example

    def apply(self, settings: Settings) -> AutoscalingRecord:
        ctx = self.ctx
        endpoint = require_deployed(ctx)
        minimum, maximum, target = settings.minimum, settings.maximum, settings.target
        if not 0 <= minimum <= maximum or maximum < 1:
            raise UserError(f"need 0 <= --min ({minimum}) <= --max ({maximum}) and --max >= 1")
        if target <= 0:
            raise UserError("--target must be positive (queued requests per instance)")
        check_cooldowns(settings)
        name = endpoint["name"]
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
        common = {"ServiceNamespace": NAMESPACE, "ResourceId": rid, "ScalableDimension": DIMENSION}
        record["policy_arn"] = client.put_scaling_policy(
            PolicyName=record["policy"],
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": float(target),
                "CustomizedMetricSpecification": {
                    "MetricName": BACKLOG_PER_INSTANCE,
                    "Namespace": METRIC_NAMESPACE,
                    "Dimensions": _dimensions(name),
                    "Statistic": "Average",
                },
                "ScaleInCooldown": settings.scale_in_cooldown,
                "ScaleOutCooldown": settings.scale_out_cooldown,
            },
            **common,
        )["PolicyARN"]
        ctx.save()
        if minimum == 0:
            record["step_policy"] = step_policy(name)
            ctx.save()
            step_arn = client.put_scaling_policy(
                PolicyName=record["step_policy"],
                PolicyType="StepScaling",
                StepScalingPolicyConfiguration={
                    "AdjustmentType": "ChangeInCapacity",
                    "MetricAggregationType": "Average",
                    "Cooldown": settings.scale_out_cooldown,
                    "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
                },
                **common,
            )["PolicyARN"]
            record["alarm"] = alarm_name(name)
            ctx.save()
            ctx.aws.client("cloudwatch").put_metric_alarm(
                AlarmName=record["alarm"],
                AlarmDescription=f"{name}: requests wait and no instance runs; add one",
                Namespace=METRIC_NAMESPACE,
                MetricName=NO_CAPACITY,
                Dimensions=_dimensions(name),
                Statistic="Average",
                Period=60,
                EvaluationPeriods=2,
                DatapointsToAlarm=2,
                Threshold=1.0,
                ComparisonOperator="GreaterThanOrEqualToThreshold",
                TreatMissingData="missing",
                AlarmActions=[step_arn],
                Tags=names.as_aws(tags),
            )
        ctx.save()
        return record

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
