"""What `up` and `update` share: a model and its endpoint config, created and recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deploy import names, requests, spec
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
    model_arn = sm.create_model(**requests.model_request(wanted, found.model, tags))["ModelArn"]
    remember(ctx.state, "model", found.model, model_arn)
    ctx.save()
    ctx.log(f"created model {found.model}")
    config_arn = sm.create_endpoint_config(
        **requests.endpoint_config_request(wanted, found.config, found.model, tags)
    )["EndpointConfigArn"]
    remember(ctx.state, "endpoint-config", found.config, config_arn)
    ctx.save()
    ctx.log(f"created endpoint config {found.config} ({spec.describe(wanted)})")
