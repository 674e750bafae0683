"""`status`'s last hour from CloudWatch: invocations, errors, latency, CPU and memory.

Variant metrics live in AWS/SageMaker (EndpointName, VariantName); the instances' CPU and memory
in /aws/sagemaker/Endpoints. Sums, averages and maxima come in one GetMetricData call over one
3600 s period; the p50/p99 of ModelLatency and OverheadLatency (microseconds, shown in ms) come
from GetMetricStatistics' ExtendedStatistics. A figure with no data in the hour is None.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from botocore.exceptions import ClientError

from deploy import config
from deploy.context import Context

VARIANT_NS = "AWS/SageMaker"
INSTANCE_NS = "/aws/sagemaker/Endpoints"
# (key in the report, namespace, metric, statistic)
SUMMARY = (
    ("invocations", VARIANT_NS, "Invocations", "Sum"),
    ("errors_4xx", VARIANT_NS, "Invocation4XXErrors", "Sum"),
    ("errors_5xx", VARIANT_NS, "Invocation5XXErrors", "Sum"),
    ("model_latency_avg_us", VARIANT_NS, "ModelLatency", "Average"),
    ("overhead_latency_avg_us", VARIANT_NS, "OverheadLatency", "Average"),
    ("cpu_percent_avg", INSTANCE_NS, "CPUUtilization", "Average"),
    ("cpu_percent_max", INSTANCE_NS, "CPUUtilization", "Maximum"),
    ("memory_percent_avg", INSTANCE_NS, "MemoryUtilization", "Average"),
    ("memory_percent_max", INSTANCE_NS, "MemoryUtilization", "Maximum"),
)
PERCENTILES = ("p50", "p99")
LATENCIES = (("model_latency", "ModelLatency"), ("overhead_latency", "OverheadLatency"))


def window(now: datetime | None = None) -> tuple[datetime, datetime]:
    end = (now or datetime.now(UTC)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end - timedelta(hours=1), end


def _dimensions(endpoint: str, variant: str) -> list[dict]:
    return [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]


def last_hour(ctx: Context, endpoint: str, variant: str = config.VARIANT_NAME) -> dict:
    cw = ctx.aws.client("cloudwatch")
    start, end = window()
    dims = _dimensions(endpoint, variant)
    queries = [
        {
            "Id": f"m{index}",
            "Label": key,
            "MetricStat": {
                "Metric": {"Namespace": ns, "MetricName": metric, "Dimensions": dims},
                "Period": 3600,
                "Stat": stat,
            },
        }
        for index, (key, ns, metric, stat) in enumerate(SUMMARY)
    ]
    found = cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
    by_id = {r["Id"]: r.get("Values") or [] for r in found.get("MetricDataResults", [])}
    report: dict = {"window": {"start": start.isoformat(), "end": end.isoformat()}}
    for index, (key, _, _, stat) in enumerate(SUMMARY):
        values = by_id.get(f"m{index}") or []
        if not values:
            report[key] = None
        elif stat == "Sum":
            report[key] = float(sum(values))
        elif stat == "Maximum":
            report[key] = float(max(values))
        else:
            report[key] = float(values[0])
    for key, metric in LATENCIES:
        points = cw.get_metric_statistics(
            Namespace=VARIANT_NS,
            MetricName=metric,
            Dimensions=dims,
            StartTime=start,
            EndTime=end,
            Period=3600,
            ExtendedStatistics=list(PERCENTILES),
        ).get("Datapoints", [])
        extended = (points[0].get("ExtendedStatistics") or {}) if points else {}
        for p in PERCENTILES:
            value = extended.get(p)
            report[f"{key}_{p}_ms"] = None if value is None else round(float(value) / 1000, 2)
    for key in ("model_latency_avg_us", "overhead_latency_avg_us"):
        value = report.pop(key)
        report[key.replace("_us", "_ms")] = None if value is None else round(value / 1000, 2)
    return report


def safely(ctx: Context, endpoint: str) -> dict:
    """The last hour, or {"error": ...}: `status` still shows the rest when CloudWatch says no."""
    try:
        return last_hour(ctx, endpoint)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return {"error": f"{error.get('Code', '?')}: {error.get('Message', '')}".strip()}


def _n(value: float | None, unit: str = "", digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def render(figures: dict, alarm_states: list[dict], instances: str) -> list[str]:
    """The lines `status` prints under the endpoint."""
    if "error" in figures:
        lines = [f"last hour  not available ({figures['error']})"]
    else:
        lines = [
            f"last hour  {_n(figures['invocations'])} invocations, "
            f"{_n(figures['errors_4xx'])} 4xx, {_n(figures['errors_5xx'])} 5xx"
            + (f"; {instances}" if instances else ""),
            f"latency    model p50 {_n(figures['model_latency_p50_ms'], ' ms', 1)} "
            f"p99 {_n(figures['model_latency_p99_ms'], ' ms', 1)} "
            f"(avg {_n(figures['model_latency_avg_ms'], ' ms', 1)}); overhead p50 "
            f"{_n(figures['overhead_latency_p50_ms'], ' ms', 1)} "
            f"p99 {_n(figures['overhead_latency_p99_ms'], ' ms', 1)} "
            f"(avg {_n(figures['overhead_latency_avg_ms'], ' ms', 1)})",
            f"instances  CPU avg {_n(figures['cpu_percent_avg'], ' %', 1)} "
            f"max {_n(figures['cpu_percent_max'], ' %', 1)}; memory avg "
            f"{_n(figures['memory_percent_avg'], ' %', 1)} "
            f"max {_n(figures['memory_percent_max'], ' %', 1)}",
        ]
    for alarm in alarm_states:
        lines.append(f"alarm      {alarm['name']}  {alarm['state']}  ({alarm['metric']})")
    return lines
