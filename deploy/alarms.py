"""The CloudWatch alarms that roll an update back: 5xx errors and p99 ModelLatency of the variant.

`update --rollback-alarms auto` creates them (tagged, named ENDPOINT-rollback-*), SageMaker watches
them during the blue/green update (AutoRollbackConfiguration), and `down` deletes them.

The p99 bound comes from docs/bench.md's quiet run ("Issue 6's run": Intel Xeon with AMX, 2 vCPUs,
nothing else running, as on a dedicated instance; the newer run there was on a shared, noisy
machine), our server with 4 requests in flight (its 4 waitress threads: the most it works on):
p99 282.4 ms for yolov7-tiny (24.3 MB ONNX) and 1322.7 ms for yolov7 (147.6 MB), a line through
both for other sizes. An instance with V vCPUs does that work on min(V, 4) cores instead of 2,
so the figure is scaled by 2 / min(V, 4); then doubled, so that only a clear regression (twice as
slow under full load) rolls back, not noise. `--latency-p99-ms` overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from deploy import config, names, preflight
from deploy.aws import ownership, paging
from deploy.context import Context
from deploy.errors import UserError

NAMESPACE = "AWS/SageMaker"
# (ONNX MB, p99 ms at concurrency 4 on 2 vCPUs): docs/bench.md, `ours (HTTP)`.
BENCH_P99_C4 = ((24.3, 282.4), (147.6, 1322.7))
BENCH_VCPUS = 2
IN_FLIGHT = 4
MARGIN = 2.0
DEFAULT_MODEL_MB = 24.3  # the image's own model (weights/model.onnx) is yolov7-tiny sized


@dataclass(frozen=True)
class LatencyBound:
    ms: float
    how: str


def p99_bound(instance_type: str | None, onnx_bytes: int | None) -> LatencyBound:
    (mb_a, ms_a), (mb_b, ms_b) = BENCH_P99_C4
    size = onnx_bytes / 1e6 if onnx_bytes else DEFAULT_MODEL_MB
    bench = max(ms_a + (size - mb_a) * (ms_b - ms_a) / (mb_b - mb_a), ms_a / 4)
    cores = min(preflight.vcpus(instance_type), IN_FLIGHT) if instance_type else BENCH_VCPUS
    bound = MARGIN * bench * BENCH_VCPUS / cores
    model = f"{size:.1f} MB model" + ("" if onnx_bytes else " (assumed: baked into the image)")
    where = instance_type or "serverless"
    return LatencyBound(
        round(bound, 1),
        f"{MARGIN:g} x {bench:.0f} ms (bench p99, 4 in flight, {model}) x {BENCH_VCPUS}/{cores} "
        f"cores of {where}",
    )


def names_for(endpoint: str) -> dict[str, str]:
    return {
        "errors": f"{endpoint}-rollback-5xx"[:255],
        "latency": f"{endpoint}-rollback-p99-latency"[:255],
    }


def _dimensions(endpoint: str) -> list[dict[str, str]]:
    return [
        {"Name": "EndpointName", "Value": endpoint},
        {"Name": "VariantName", "Value": config.VARIANT_NAME},
    ]


def requests(endpoint: str, bound: LatencyBound, tags: dict[str, str]) -> list[dict[str, Any]]:
    """put_metric_alarm's arguments for both alarms (5xx, then p99 latency)."""
    made = names_for(endpoint)
    common: dict[str, Any] = {
        "Namespace": NAMESPACE,
        "Dimensions": _dimensions(endpoint),
        "Period": 60,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "Tags": names.as_aws(tags),
    }
    return [
        {
            "AlarmName": made["errors"],
            "AlarmDescription": f"{endpoint}: any 5xx in a minute rolls an update back",
            "MetricName": "Invocation5XXErrors",
            "Statistic": "Sum",
            "EvaluationPeriods": 1,
            "Threshold": 0.0,
            **common,
        },
        {
            "AlarmName": made["latency"],
            "AlarmDescription": (
                f"{endpoint}: p99 ModelLatency above {bound.ms:g} ms ({bound.how})"
            ),
            "MetricName": "ModelLatency",
            "ExtendedStatistic": "p99",
            "EvaluationPeriods": 2,
            "DatapointsToAlarm": 2,
            "Threshold": bound.ms * 1000.0,  # ModelLatency is in microseconds
            **common,
        },
    ]


def tags_of(ctx: Context) -> dict[str, str]:
    """The tags the alarms carry: the deployment's."""
    return ctx.state.get("tags") or names.tags_for(ctx.name_prefix)


def create(ctx: Context, endpoint: str, bound: LatencyBound) -> list[str]:
    """Put both alarms (idempotent: same name, same definition) and record them in the state."""
    cw = ctx.aws.client("cloudwatch")
    for request in requests(endpoint, bound, tags_of(ctx)):
        cw.put_metric_alarm(**request)
    made = names_for(endpoint)
    ctx.state["rollback_alarms"] = {
        "names": sorted(made.values()),
        "created": True,
        "p99_ms": bound.ms,
        "how": bound.how,
    }
    ctx.save()
    return sorted(made.values())


def existing(ctx: Context, alarm_names: list[str]) -> list[dict[str, Any]]:
    if not alarm_names:
        return []
    cw = ctx.aws.client("cloudwatch")
    return list(
        paging.items(
            cw,
            "describe_alarms",
            "MetricAlarms",
            AlarmNames=alarm_names,
            AlarmTypes=["MetricAlarm"],
        )
    )


def require(ctx: Context, alarm_names: list[str]) -> None:
    """User-named alarms must exist before an update relies on them."""
    found = {a["AlarmName"] for a in existing(ctx, alarm_names)}
    missing = [name for name in alarm_names if name not in found]
    if missing:
        raise UserError(
            f"no CloudWatch alarm named {', '.join(missing)} in {ctx.aws.region}",
            "create it first, or pass --rollback-alarms auto",
        )


def fired(ctx: Context, alarm_names: list[str]) -> list[dict[str, Any]]:
    """The alarms in ALARM now (what made SageMaker roll back)."""
    return [a for a in existing(ctx, alarm_names) if a.get("StateValue") == "ALARM"]


def states(ctx: Context) -> list[dict[str, Any]]:
    """For `status`: every rollback alarm this state knows of, with its state and reason."""
    record = ctx.state.get("rollback_alarms") or {}
    return [
        {
            "name": a["AlarmName"],
            "metric": a.get("MetricName"),
            "state": a.get("StateValue"),
            "reason": a.get("StateReason"),
        }
        for a in existing(ctx, record.get("names") or [])
    ]


def delete(ctx: Context, endpoints: list[str] | tuple[str, ...] = ()) -> list[str]:
    """`down`: delete the rollback alarms this tool created (tag-checked), those of the state and
    those named after `endpoints` (down --endpoint without a state); user-named ones stay."""
    record = ctx.state.get("rollback_alarms") or {}
    candidates = list(record.get("names") or []) if record.get("created") else []
    for endpoint in endpoints:
        candidates += [n for n in names_for(endpoint).values() if n not in candidates]
    if not candidates:
        ctx.state.pop("rollback_alarms", None)
        return []
    ours = delete_ours(ctx, candidates)
    ctx.state.pop("rollback_alarms", None)
    ctx.save()
    return ours


def delete_ours(ctx: Context, alarm_names: list[str]) -> list[str]:
    """Delete those of the named alarms that exist and carry this tool's tag; return them. One
    that is not tagged (or whose tags cannot be read) is kept, and the log says so."""
    cw = ctx.aws.client("cloudwatch")

    def tags_of(alarm: dict[str, Any]) -> list[dict[str, str]]:
        try:
            tags: list[dict[str, str]] = cw.list_tags_for_resource(
                ResourceARN=alarm["AlarmArn"]
            ).get("Tags", [])
        except ClientError:
            tags = []  # unreadable tags: not known to be ours, so kept
        return tags

    found, kept = ownership.split_ours(existing(ctx, alarm_names), tags_of)
    for alarm in kept:
        ctx.log(f"kept alarm {alarm['AlarmName']}: it is not tagged {config.TAG_KEY}")
    ours = [alarm["AlarmName"] for alarm in found]
    if ours:
        cw.delete_alarms(AlarmNames=ours)
    return ours
