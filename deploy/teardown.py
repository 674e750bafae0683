"""`down`: delete what this tool created, and only that. Idempotent.

Every resource is looked up first: one already gone is skipped; one that exists without the tag
managed-by=yolov7-sagemaker-deploy is refused, whatever the state file says. The ECR repository and
the S3 model data go only when asked (--delete-repository, --delete-model-data).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from deploy import alarms, names, scale_to_zero, scaling
from deploy.endpoints import delete_if_ours, find, tags_of
from deploy.images import find_repository
from deploy.state import forget, has_resources
from deploy.waiting import ProgressLine, wait_for


@dataclass
class DownReport:
    deleted: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    state_removed: bool = False

    @property
    def nothing(self) -> bool:
        return not (self.deleted or self.refused or self.planned)


def _add(items: list[tuple[str, str]], kind: str, name: str | None) -> None:
    if name and (kind, name) not in items:
        items.append((kind, name))


def down(
    ctx,
    endpoint_name: str | None = None,
    delete_model_data: bool = False,
    delete_repository: bool = False,
    dry_run: bool = False,
    wait: bool = True,
    poll: float | None = None,
    timeout: float | None = None,
    stream=None,
) -> DownReport:
    state = ctx.state
    report = DownReport()
    if not has_resources(state) and not endpoint_name:
        return report
    sm = ctx.aws.client("sagemaker")

    targets: list[tuple[str, str]] = []
    recorded = state.get("endpoint") or {}
    endpoints = [n for n in (endpoint_name, recorded.get("name")) if n]
    for name in endpoints:
        _add(targets, "endpoint", name)
        live = find(sm, "endpoint", name)
        if live and names.is_ours(tags_of(sm, live["EndpointArn"])):
            # What actually runs, even if the state is stale.
            live_config_name = live.get("EndpointConfigName")
            _add(targets, "endpoint-config", live_config_name)
            live_config = None
            if live_config_name:
                live_config = find(sm, "endpoint-config", live_config_name)
            for variant in (live_config or {}).get("ProductionVariants", []):
                _add(targets, "model", variant.get("ModelName"))
    _add(targets, "endpoint-config", recorded.get("config"))
    _add(targets, "model", recorded.get("model"))
    for kind in ("endpoint", "endpoint-config", "model"):
        for item in state.get("resources", []):
            if item["type"] == kind:
                _add(targets, kind, item["name"])
    targets.sort(key=lambda t: ("endpoint", "endpoint-config", "model").index(t[0]))

    if dry_run:
        for kind, name in targets:
            report.planned.append(f"{kind} {name}")
        if state.get("autoscaling"):
            report.planned.append(f"scalable target {state['autoscaling']['resource_id']}")
            if state["autoscaling"].get("alarm"):
                report.planned.append(f"alarm {state['autoscaling']['alarm']}")
        if (state.get("rollback_alarms") or {}).get("created"):
            report.planned += [f"alarm {a}" for a in state["rollback_alarms"]["names"]]
        if delete_model_data and state.get("model_data"):
            report.planned.append(f"model data {state['model_data']['uri']}")
        if delete_repository and state.get("image"):
            report.planned.append(f"ECR repository {state['image']['repository']}")
        return report

    for name in endpoints:
        _deregister_scaling(ctx, sm, name, report)
    report.deleted += [f"alarm {name}" for name in alarms.delete(ctx, endpoints)]

    for kind, name in targets:
        outcome = delete_if_ours(sm, kind, name)
        label = f"{kind} {name}"
        if outcome == "refused":
            report.refused.append(label)
            continue
        (report.deleted if outcome == "deleted" else report.absent).append(label)
        forget(state, kind, name)
        if kind == "endpoint" and recorded.get("name") == name:
            state.pop("endpoint", None)
        ctx.save()
        if kind == "endpoint" and outcome == "deleted" and wait:
            wait_for(
                sm,
                "endpoint_deleted",
                {"EndpointName": name},
                label=f"endpoint {name}",
                status_of=lambda r: r.get("EndpointStatus", "?"),
                poll=poll,
                timeout=timeout,
                progress=ProgressLine(stream),
            )

    # Transform jobs cannot be deleted; their records go with the deployment.
    for item in [r for r in state.get("resources", []) if r["type"] == "transform-job"]:
        forget(state, "transform-job", item["name"])
    state["transform_jobs"] = []

    if delete_model_data and state.get("model_data"):
        _delete_model_data(ctx, state["model_data"], report)
    elif state.get("model_data"):
        report.kept.append(f"model data {state['model_data']['uri']} (--delete-model-data)")
    if delete_repository and state.get("image"):
        _delete_repository(ctx, state["image"], report)
    elif state.get("image"):
        report.kept.append(f"ECR repository {state['image']['repository']} (--delete-repository)")

    if has_resources(state):
        ctx.save()
    else:
        ctx.store.path.unlink(missing_ok=True)
        report.state_removed = True
    return report


def _deregister_scaling(ctx, sm, endpoint: str, report: DownReport) -> None:
    record = ctx.state.get("autoscaling")
    if record and record.get("resource_id") == scaling.resource_id(endpoint):
        if scaling.remove(ctx):
            report.deleted.append(f"scalable target {record['resource_id']}")
            if record.get("alarm"):
                policies = ", ".join(p for p in (record["policy"], record["step_policy"]) if p)
                report.deleted.append(f"alarm {record['alarm']}, scaling policies {policies}")
        return
    # No record (down --endpoint without state): deregister only for an endpoint that is ours.
    live = find(sm, "endpoint", endpoint)
    if not live or not names.is_ours(tags_of(sm, live["EndpointArn"])):
        return
    if scaling.describe(ctx, endpoint):
        config_name = live.get("EndpointConfigName")
        ctx.state["autoscaling"] = {
            "resource_id": scaling.resource_id(endpoint),
            "policy": scaling.policy_name(endpoint),
            **scale_to_zero.recover(
                find(sm, "endpoint-config", config_name) if config_name else None, endpoint
            ),
        }
        if scaling.remove(ctx):
            report.deleted.append(f"scalable target {scaling.resource_id(endpoint)}")


def _delete_model_data(ctx, model_data: dict, report: DownReport) -> None:
    s3 = ctx.aws.client("s3")
    label = f"model data {model_data['uri']}"
    try:
        tagging = s3.get_object_tagging(Bucket=model_data["bucket"], Key=model_data["key"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "NoSuchBucket", "404"):
            report.absent.append(label)
            ctx.state.pop("model_data", None)
            ctx.save()
            return
        raise
    if not names.is_ours(tagging.get("TagSet", [])):
        report.refused.append(label)
        return
    s3.delete_object(Bucket=model_data["bucket"], Key=model_data["key"])
    report.deleted.append(label)
    ctx.state.pop("model_data", None)
    ctx.save()


def _delete_repository(ctx, image: dict, report: DownReport) -> None:
    ecr = ctx.aws.client("ecr")
    label = f"ECR repository {image['repository']}"
    repo = find_repository(ecr, image["repository"])
    if repo is None:
        report.absent.append(label)
        ctx.state.pop("image", None)
        ctx.save()
        return
    tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags", [])
    if not names.is_ours(tags):
        report.refused.append(label)
        return
    try:
        ecr.delete_repository(repositoryName=image["repository"], force=True)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "RepositoryNotFoundException":
            raise
    report.deleted.append(label)
    ctx.state.pop("image", None)
    ctx.save()
