"""`status`'s multi-model figures for the last hour, from SageMaker's own endpoint metrics.

A multi-model endpoint publishes, per variant in AWS/SageMaker: LoadedModelCount (models held
by the instances), ModelCacheHit (invocations whose model was already loaded), and the times of
a cache miss: ModelLoadingWaitTime (what an invocation waited for its model: download and load),
ModelDownloadingTime, ModelLoadingTime and ModelUnloadingTime (microseconds). One GetMetricData
call over one 3600 s period; a figure with no data in the hour is None.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from deploy import config
from deploy.context import Context
from deploy.metrics import VARIANT_NS, window

# (key in the report, metric, statistic)
FIGURES = (
    ("loaded_models_max", "LoadedModelCount", "Maximum"),
    ("invocations", "Invocations", "Sum"),
    ("cache_hits", "ModelCacheHit", "Sum"),
    ("loading_wait_avg_us", "ModelLoadingWaitTime", "Average"),
    ("loading_wait_max_us", "ModelLoadingWaitTime", "Maximum"),
    ("downloading_avg_us", "ModelDownloadingTime", "Average"),
    ("loading_avg_us", "ModelLoadingTime", "Average"),
    ("unloading_avg_us", "ModelUnloadingTime", "Average"),
)


def last_hour(ctx: Context, endpoint: str, variant: str = config.VARIANT_NAME) -> dict:
    """The figures, times in ms, and the cache hit rate; {"error": ...} when CloudWatch says no."""
    cw = ctx.aws.client("cloudwatch")
    start, end = window()
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    queries = [
        {
            "Id": f"mm{index}",
            "Label": key,
            "MetricStat": {
                "Metric": {"Namespace": VARIANT_NS, "MetricName": metric, "Dimensions": dims},
                "Period": 3600,
                "Stat": stat,
            },
        }
        for index, (key, metric, stat) in enumerate(FIGURES)
    ]
    try:
        found = cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return {"error": f"{error.get('Code', '?')}: {error.get('Message', '')}".strip()}
    by_id = {r["Id"]: r.get("Values") or [] for r in found.get("MetricDataResults", [])}
    report: dict = {}
    for index, (key, _, stat) in enumerate(FIGURES):
        values = by_id.get(f"mm{index}") or []
        value = None
        if values:
            value = float(sum(values) if stat == "Sum" else max(values))
        if key.endswith("_us"):
            key, value = key[: -len("_us")] + "_ms", None if value is None else value / 1000
        report[key] = value
    hits, calls = report["cache_hits"], report["invocations"]
    report["cache_hit_rate"] = None if not calls or hits is None else hits / calls
    return report


def _n(value: float | None, unit: str = "", digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def render(figures: dict, prefix: str | None) -> list[str]:
    """The lines `status` prints for a multi-model endpoint."""
    lines = [f"models     loaded from {prefix}"]
    if "error" in figures:
        return [*lines, f"models     last hour not available ({figures['error']})"]
    rate = figures["cache_hit_rate"]
    lines.append(
        f"models     last hour: up to {_n(figures['loaded_models_max'])} loaded; cache hits "
        f"{_n(figures['cache_hits'])} of {_n(figures['invocations'])} invocations"
        + ("" if rate is None else f" ({rate:.0%})")
    )
    lines.append(
        f"loading    wait avg {_n(figures['loading_wait_avg_ms'], ' ms', 1)} "
        f"max {_n(figures['loading_wait_max_ms'], ' ms', 1)}; download avg "
        f"{_n(figures['downloading_avg_ms'], ' ms', 1)}, load avg "
        f"{_n(figures['loading_avg_ms'], ' ms', 1)}, unload avg "
        f"{_n(figures['unloading_avg_ms'], ' ms', 1)}"
    )
    return lines
