"""`status`: who we are on AWS, and what the state file's deployment looks like right now."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from deploy import alarms, metrics, multi_model_metrics, update_steps
from deploy.autoscaling import backlog, choose
from deploy.aws.not_found import is_not_found
from deploy.aws.sagemaker import describe_endpoint, instances, log_group
from deploy.context import Context


def status(ctx: Context) -> dict[str, Any]:
    state = ctx.state
    aws = ctx.aws
    sm = aws.client("sagemaker")
    report: dict[str, Any] = {
        "state_file": str(ctx.store.path),
        "region": aws.region,
        "identity": aws.identity()["arn"],
        "image": (state.get("image") or {}).get("uri"),
        "model_data": (state.get("model_data") or {}).get("uri"),
        "endpoint": None,
        "autoscaling": None,
        "transform_jobs": [],
    }
    if state.get("endpoint"):
        update_steps.reconcile(ctx, sm)  # an interrupted `update` is settled when it can be
    recorded = state.get("endpoint")
    if recorded:
        live = describe_endpoint(sm, recorded["name"])
        endpoint = {
            "name": recorded["name"],
            "status": live["EndpointStatus"] if live else "missing (deleted outside this tool?)",
            "config": (live or {}).get("EndpointConfigName", recorded.get("config")),
            "model": recorded.get("model"),
            "image": recorded.get("image"),
            "model_data": recorded.get("model_data"),
            "instance_type": recorded.get("instance_type"),
            "serverless": recorded.get("serverless"),
            "instances": instances(live) if live else "",
            "failure_reason": (live or {}).get("FailureReason"),
            "created": str((live or {}).get("CreationTime", recorded.get("created_at", ""))),
            "last_modified": str((live or {}).get("LastModifiedTime", "")),
            "log_group": log_group(recorded["name"]),
        }
        report["endpoint"] = endpoint
        if live:
            endpoint["data_capture"] = (recorded.get("data_capture") or {}).get("DestinationS3Uri")
            report["last_hour"] = metrics.safely(ctx, recorded["name"])
            report["alarms"] = alarms.states(ctx)
        if live and recorded.get("multi_model"):
            report["multi_model"] = {
                "prefix": recorded.get("model_data"),
                "last_hour": multi_model_metrics.last_hour(ctx, recorded["name"]),
            }
        if live and not recorded.get("serverless"):
            report["autoscaling"] = choose.for_endpoint(ctx).describe()
        folders = recorded.get("async_inference")
        if live and folders:
            variant = (live.get("ProductionVariants") or [{}])[0]
            report["async"] = {
                **{key: folders.get(key) for key in ("input", "output", "failure")},
                "backlog": backlog.backlog(ctx, recorded["name"]),
                "instances": variant.get("CurrentInstanceCount"),
            }
    for job in state.get("transform_jobs", []):
        try:
            found = sm.describe_transform_job(TransformJobName=job["name"])
            job_status = found["TransformJobStatus"]
            reason = found.get("FailureReason") or None
        except ClientError as exc:
            if not is_not_found(exc):
                raise
            job_status, reason = "missing", None
        report["transform_jobs"].append(
            {
                "name": job["name"],
                "status": job_status,
                "input": job["input"],
                "output": job["output"],
                "failure_reason": reason,
            }
        )
    return report
