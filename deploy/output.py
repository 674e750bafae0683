"""Plain-text renderings of results; the CLI prints what these return."""

from __future__ import annotations

from deploy import config
from deploy.waiting import elapsed


def table(rows: list[list[str]], header: list[str], right: set[int] | None = None) -> str:
    right = right or set()
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def fmt(row: list[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(header), *(fmt(r) for r in rows)])


def detections(data: dict, round_trip_s: float, target: str) -> str:
    found = data.get("detections") or []
    rows = []
    for index, det in enumerate(found, 1):
        box = det.get("box") or [0, 0, 0, 0]
        label = det.get("label")
        if label is None:
            label = f"class{det.get('class_id', '?')}"
        rows.append(
            [
                str(index),
                str(label),
                f"{float(det.get('score', 0)):.3f}",
                *(f"{float(v):.1f}" for v in box[:4]),
            ]
        )
    lines = []
    if rows:
        header = ["#", "label", "score", "x1", "y1", "x2", "y2"]
        lines.append(table(rows, header, right={0, 2, 3, 4, 5, 6}))
    image = data.get("image") or {}
    timing = data.get("timing_ms") or {}
    summary = [f"{len(found)} detection{'s' if len(found) != 1 else ''}"]
    if image:
        summary.append(f"{image.get('width')}x{image.get('height')} image")
    if data.get("model"):
        summary.append(f"model {data['model']}")
    total = None
    if isinstance(timing, dict) and timing:
        # the server's own steps (decode, preprocess, inference, ...) add up to its time
        total = timing.get("total")
        if total is None:
            total = sum(v for v in timing.values() if isinstance(v, int | float))
    if total is not None:
        summary.append(f"server {float(total):.1f} ms")
    summary.append(f"round trip {round_trip_s * 1000:.1f} ms")
    summary.append(f"from {target}")
    lines.append(", ".join(summary))
    return "\n".join(lines)


def outcome(result, state_path, region: str) -> str:
    lines = [
        f"endpoint  {result.endpoint}  {result.status}"
        + (f" after {elapsed(result.seconds)}" if result.seconds is not None else ""),
        f"config    {result.config}",
        f"model     {result.model}",
        f"region    {region}",
        f"state     {state_path}",
    ]
    if result.deleted:
        lines.append(f"removed   {', '.join(result.deleted)}")
    if not result.waited:
        lines.append("not waiting: follow it with `python -m deploy status`")
    else:
        lines.append("next      python -m deploy invoke IMAGE.jpg  (then autoscale, cost, down)")
    return "\n".join(lines)


def status(report: dict) -> str:
    lines = [
        f"identity   {report['identity']}",
        f"region     {report['region']}",
        f"state      {report['state_file']}",
    ]
    if report.get("image"):
        lines.append(f"image      {report['image']}")
    if report.get("model_data"):
        lines.append(f"model data {report['model_data']}")
    endpoint = report.get("endpoint")
    if not endpoint:
        lines.append("endpoint   none (run `python -m deploy up`)")
    else:
        detail = endpoint["instances"] or ""
        if endpoint.get("serverless"):
            detail = "serverless {memory_mb} MB, max concurrency {max_concurrency}".format(
                **endpoint["serverless"]
            )
        elif endpoint.get("instance_type"):
            detail = f"{detail} {endpoint['instance_type']}".strip()
        lines.append(f"endpoint   {endpoint['name']}  {endpoint['status']}  {detail}".rstrip())
        lines.append(f"config     {endpoint['config']}")
        lines.append(f"model      {endpoint['model']}")
        if endpoint.get("failure_reason"):
            lines.append(f"failure    {endpoint['failure_reason']}")
        lines.append(f"logs       CloudWatch log group {endpoint['log_group']}")
        scaling = report.get("autoscaling")
        if scaling and scaling.get("metric") == "ApproximateBacklogSizePerInstance":
            lines.append(
                f"autoscale  {scaling['min']}-{scaling['max']} instances, target "
                f"{scaling['target'] or 0:g} queued requests/instance"
                + (", alarm brings it back from zero" if scaling.get("step_policies") else "")
            )
        elif scaling:
            lines.append(
                f"autoscale  {scaling['min']}-{scaling['max']} instances, target "
                f"{scaling['target'] or 0:g} invocations/instance/minute"
            )
        else:
            lines.append("autoscale  off")
        queue = report.get("async")
        if queue:
            backlog = "n/a (no data in 15 min)" if queue["backlog"] is None else queue["backlog"]
            count = "?" if queue["instances"] is None else queue["instances"]
            lines.append(
                f"async      backlog {backlog}, {count} instances; "
                f"{queue['input']} -> {queue['output']}"
            )
    for job in report.get("transform_jobs", []):
        text = f"transform  {job['name']}  {job['status']}  {job['input']} -> {job['output']}"
        if job.get("failure_reason"):
            text += f"  ({job['failure_reason']})"
        lines.append(text)
    return "\n".join(lines)


def cost(result) -> str:
    price = result.price
    lines = [
        f"{price.instance_type} in {price.region}, {price.usage}, on-demand: "
        f"${price.usd_per_hour:.4f} per hour ({price.usagetype})",
        f"{result.instance_count} instance{'s' if result.instance_count != 1 else ''}, "
        f"{config.HOURS_PER_MONTH} h/month: ${result.usd_per_month:,.2f} per month",
    ]
    if result.usd_per_million is not None:
        lines.append(
            f"at {result.throughput:g} images/s per instance, kept busy: "
            f"${result.usd_per_million:,.2f} per million images"
        )
    else:
        lines.append("pass --throughput IMAGES_PER_S (from the benchmark) for the cost per image")
    return "\n".join(lines)


def down(report, dry_run: bool) -> str:
    if dry_run:
        if not report.planned:
            return "nothing to delete"
        return "\n".join(["would delete (if tagged by this tool):", *report.planned])
    lines = ["nothing to delete"] if report.nothing and not report.absent else []
    lines += [f"deleted  {item}" for item in report.deleted]
    lines += [f"gone     {item} (already)" for item in report.absent]
    lines += [f"REFUSED  {item} (not tagged {config.TAG_KEY})" for item in report.refused]
    lines += [f"kept     {item}" for item in report.kept]
    if report.state_removed:
        lines.append("state file removed: nothing of this deployment is left")
    return "\n".join(lines)
