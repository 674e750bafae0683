"""The exact boto3 requests of a deployment, as pure functions of a Spec (deploy/spec.py).

`up` and `update` send them, `--dry-run` prints them and `template` turns them into
CloudFormation resources: one source, so that what is created, what is shown and what the
template holds cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploy import names
from deploy.spec import Spec


@dataclass(frozen=True)
class Call:
    """One AWS call: the boto3 client's service name, its method, and its keyword arguments."""

    service: str
    method: str
    params: dict[str, Any]

    @property
    def operation(self) -> str:
        """The API's name for it (create_endpoint_config -> CreateEndpointConfig)."""
        return "".join(part.title() for part in self.method.split("_"))


def model_request(spec: Spec, name: str, tags: dict[str, str]) -> dict[str, Any]:
    """create_model's arguments: the container, the role, the network settings, the tags."""
    return {
        "ModelName": name,
        "ExecutionRoleArn": spec.role,
        "PrimaryContainer": spec.container(),
        **spec.model_settings(),
        "Tags": names.as_aws(tags),
    }


def endpoint_config_request(
    spec: Spec, config_name: str, model_name: str, tags: dict[str, str]
) -> dict[str, Any]:
    """create_endpoint_config's arguments: one variant, async and capture when asked, the key."""
    request: dict[str, Any] = {
        "EndpointConfigName": config_name,
        "ProductionVariants": [spec.variant(model_name)],
    }
    if spec.async_inference:
        request["AsyncInferenceConfig"] = spec.async_inference["config"]
    if spec.data_capture:
        request["DataCaptureConfig"] = spec.data_capture
    request.update(spec.config_settings())
    request["Tags"] = names.as_aws(tags)
    return request


def endpoint_request(name: str, config_name: str, tags: dict[str, str]) -> dict[str, Any]:
    """create_endpoint's arguments."""
    return {"EndpointName": name, "EndpointConfigName": config_name, "Tags": names.as_aws(tags)}


def update_request(
    name: str, config_name: str, deployment: dict[str, Any] | None = None
) -> dict[str, Any]:
    """update_endpoint's arguments; `deployment` is the guardrails' DeploymentConfig (rollout)."""
    request: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": config_name}
    if deployment:
        request["DeploymentConfig"] = deployment
    return request
