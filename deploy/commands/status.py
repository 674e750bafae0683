"""`status`: the identity, what the state's deployment looks like now, and its last hour."""

from __future__ import annotations

import argparse
import json
from typing import Any

from deploy import metrics, multi_model_metrics
from deploy import status as status_report
from deploy.context import Context
from deploy.errors import EXIT_OK

NAME = "status"
HELP = "show the identity, what is deployed, and its last hour"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")


def run(ctx: Context, args: argparse.Namespace) -> int:
    report = status_report.status(ctx)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return EXIT_OK
    lines = [render(report)]
    if (report.get("endpoint") or {}).get("data_capture"):
        lines.append(f"capture    {report['endpoint']['data_capture']}")
    if report.get("last_hour"):
        shown = (report.get("endpoint") or {}).get("instances", "")
        lines += metrics.render(report["last_hour"], report.get("alarms") or [], shown)
    many = report.get("multi_model")
    if many:
        lines += multi_model_metrics.render(many["last_hour"], many["prefix"])
    print("\n".join(lines))
    return EXIT_OK


def render(report: dict[str, Any]) -> str:
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
