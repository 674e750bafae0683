"""`down`: delete what this tool created, and only that. Idempotent.

Every resource is looked up first: one already gone is skipped; one that exists without the tag
managed-by=yolov7-sagemaker-deploy is refused, whatever the state file says. The ECR repository and
the S3 model data go only when asked (--delete-repository, --delete-model-data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any, Literal

from botocore.exceptions import ClientError

from deploy import alarms, names
from deploy.autoscaling import choose, variant
from deploy.aws import buckets, ownership
from deploy.aws.not_found import is_not_found
from deploy.aws.sagemaker import delete_if_ours, find, tags_of
from deploy.aws.waiting import ProgressLine, wait_for
from deploy.context import Context
from deploy.images import find_repository
from deploy.schema import ImageRecord, ModelDataRecord, ResourceKind
from deploy.state import forget, has_resources


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


def _add(items: list[tuple[ResourceKind, str]], kind: ResourceKind, name: str | None) -> None:
    if name and (kind, name) not in items:
        items.append((kind, name))


def down(
    ctx: Context,
    endpoint_name: str | None = None,
    delete_model_data: bool = False,
    delete_repository: bool = False,
    dry_run: bool = False,
    wait: bool = True,
    poll: float | None = None,
    timeout: float | None = None,
    stream: IO[str] | None = None,
) -> DownReport:
    state = ctx.state
    report = DownReport()
    if not has_resources(state) and not endpoint_name:
        return report
    sm = ctx.aws.client("sagemaker")

    targets: list[tuple[ResourceKind, str]] = []
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


def _deregister_scaling(ctx: Context, sm: Any, endpoint: str, report: DownReport) -> None:
    record = ctx.state.get("autoscaling")
    if record and record.get("resource_id") == variant.resource_id(endpoint):
        if choose.for_endpoint(ctx).remove():
            report.deleted.append(f"scalable target {record['resource_id']}")
            if record.get("alarm"):
                policies = ", ".join(p for p in (record["policy"], record["step_policy"]) if p)
                report.deleted.append(f"alarm {record['alarm']}, scaling policies {policies}")
        return
    # No record (down --endpoint without state): deregister only for an endpoint that is ours.
    live = find(sm, "endpoint", endpoint)
    if not live or not names.is_ours(tags_of(sm, live["EndpointArn"])):
        return
    if variant.describe(ctx, endpoint):
        config_name = live.get("EndpointConfigName")
        live_config = find(sm, "endpoint-config", config_name) if config_name else None
        async_config = (live_config or {}).get("AsyncInferenceConfig")
        scaler = choose.for_endpoint(ctx, {"name": endpoint, "async_inference": async_config})
        ctx.state["autoscaling"] = scaler.recovered()
        if scaler.remove():
            report.deleted.append(f"scalable target {variant.resource_id(endpoint)}")


def _delete_model_data(ctx: Context, model_data: ModelDataRecord, report: DownReport) -> None:
    s3 = ctx.aws.client("s3")
    account = ctx.aws.identity()["account"]
    where = {"Bucket": model_data["bucket"], "Key": model_data["key"], **buckets.owner(account)}
    with buckets.pinned(model_data["bucket"], account):
        outcome = ownership.delete_if_ours(
            lambda: _object_tagging(s3, where),
            lambda tagging: tagging.get("TagSet", []),
            lambda: s3.delete_object(**where),
        )
    _record(ctx, report, outcome, f"model data {model_data['uri']}", "model_data")


def _object_tagging(s3: Any, where: dict[str, str]) -> dict[str, Any] | None:
    try:
        tagging: dict[str, Any] = s3.get_object_tagging(**where)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return tagging


def _delete_repository(ctx: Context, image: ImageRecord, report: DownReport) -> None:
    ecr = ctx.aws.client("ecr")
    outcome = ownership.delete_if_ours(
        lambda: find_repository(ecr, image["repository"]),
        lambda repo: ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags", []),
        lambda: _delete_repository_now(ecr, image["repository"]),
    )
    _record(ctx, report, outcome, f"ECR repository {image['repository']}", "image")


def _delete_repository_now(ecr: Any, name: str) -> None:
    try:
        ecr.delete_repository(repositoryName=name, force=True)
    except ClientError as exc:
        if not is_not_found(exc):
            raise  # gone meanwhile: still reported deleted, as it was asked to go


def _record(
    ctx: Context,
    report: DownReport,
    outcome: ownership.Outcome,
    label: str,
    key: Literal["model_data", "image"],
) -> None:
    """The outcome in the report; the state forgets what is deleted or already gone."""
    if outcome == "refused":
        report.refused.append(label)
        return
    (report.deleted if outcome == "deleted" else report.absent).append(label)
    ctx.state.pop(key, None)
    ctx.save()
