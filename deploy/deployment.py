"""What `up` and `update` share: a model and its endpoint config, created and recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deploy import names, spec
from deploy.context import Context
from deploy.state import remember


@dataclass
class Outcome:
    endpoint: str
    config: str
    model: str
    status: str
    seconds: float | None = None
    waited: bool = True
    deleted: list[str] = field(default_factory=list)


def create_model_and_config(
    ctx: Context, sm: Any, wanted: spec.Spec, found: names.DeploymentNames, tags: dict[str, str]
) -> None:
    """The model and its endpoint config, each recorded in the state file as soon as it exists,
    so that an interrupted `up` or `update` can still be cleaned by `down`."""
    model_arn = sm.create_model(
        ModelName=found.model,
        ExecutionRoleArn=wanted.role,
        PrimaryContainer=wanted.container(),
        Tags=names.as_aws(tags),
        **wanted.model_settings(),
    )["ModelArn"]
    remember(ctx.state, "model", found.model, model_arn)
    ctx.save()
    ctx.log(f"created model {found.model}")
    extra: dict[str, Any] = {}
    if wanted.async_inference:
        extra["AsyncInferenceConfig"] = wanted.async_inference["config"]
    if wanted.data_capture:
        extra["DataCaptureConfig"] = wanted.data_capture
    config_arn = sm.create_endpoint_config(
        EndpointConfigName=found.config,
        ProductionVariants=[wanted.variant(found.model)],
        Tags=names.as_aws(tags),
        **extra,
        **wanted.config_settings(),
    )["EndpointConfigArn"]
    remember(ctx.state, "endpoint-config", found.config, config_arn)
    ctx.save()
    ctx.log(f"created endpoint config {found.config} ({spec.describe(wanted)})")
