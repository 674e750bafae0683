"""`template`: the endpoint `up` would make, as a CloudFormation template.

For accounts where only reviewed infrastructure code may create resources. Every resource's
properties come from the request builders `up`, `update --dry-run` and `autoscale` use
(deploy/requests.py, deploy/autoscaling/, deploy/alarms.py): CloudFormation's SageMaker,
Application Auto Scaling and CloudWatch properties carry the API's names, so a request becomes a
resource by dropping the name the stack generates and linking the others with Ref / GetAtt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from deploy import alarms, config, names, requests, rollout
from deploy.requests import Call
from deploy.spec import Spec

FORMAT_VERSION = "2010-09-09"
# Parameters: what an account's reviewers may want to swap without editing the resources.
ROLE_PARAMETER = "ExecutionRoleArn"
IMAGE_PARAMETER = "Image"
ROLE_HELP = "SageMaker execution role (policy: iam/sagemaker-execution-role-policy.json)"
# CloudFormation's Application Auto Scaling resources name their target with ScalingTargetId
# instead of these three (it refuses both at once).
TARGET_KEYS = ("ServiceNamespace", "ResourceId", "ScalableDimension")


@dataclass(frozen=True)
class Rollback:
    """The rollback alarms of `update --rollback-alarms auto`, on the stack's endpoint updates."""

    bound: alarms.LatencyBound
    bake_s: int = 300


def build(
    spec: Spec,
    endpoint: str,
    tags: dict[str, str],
    scaling: list[Call] | None = None,
    rollback: Rollback | None = None,
) -> dict[str, Any]:
    """The template as a dict (JSON's shape). `scaling`: the autoscaling calls of the endpoint's
    kind (VariantScaling.requests), in the order `autoscale` makes them."""
    model = requests.model_request(spec, "", tags)
    model.pop("ModelName")  # named by the stack: a changed model is a replacement, not a clash
    model["ExecutionRoleArn"] = {"Ref": ROLE_PARAMETER}
    model["PrimaryContainer"]["Image"] = {"Ref": IMAGE_PARAMETER}
    endpoint_config = requests.endpoint_config_request(spec, "", "", tags)
    endpoint_config.pop("EndpointConfigName")
    endpoint_config["ProductionVariants"][0]["ModelName"] = {"Fn::GetAtt": ["Model", "ModelName"]}
    endpoint_props = requests.endpoint_request(endpoint, "", tags)
    endpoint_props["EndpointConfigName"] = {"Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]}
    resources: dict[str, Any] = {
        "Model": _resource("AWS::SageMaker::Model", model),
        "EndpointConfig": _resource("AWS::SageMaker::EndpointConfig", endpoint_config),
    }
    if rollback:
        made = alarms.requests(endpoint, rollback.bound, tags)
        logical = ["RollbackErrorsAlarm", "RollbackLatencyAlarm"]
        for name, request in zip(logical, made, strict=True):
            resources[name] = _resource("AWS::CloudWatch::Alarm", request)
        plan = rollout.Plan("ALL_AT_ONCE", None, rollback.bake_s, ["auto"])
        deployment = rollout.deployment_config(plan, [], spec.startup_timeout)
        deployment["AutoRollbackConfiguration"] = {
            "Alarms": [{"AlarmName": {"Ref": name}} for name in logical]
        }
        endpoint_props["DeploymentConfig"] = deployment
    resources["Endpoint"] = _resource("AWS::SageMaker::Endpoint", endpoint_props)
    resources.update(_scaling(scaling or []))
    return {
        "AWSTemplateFormatVersion": FORMAT_VERSION,
        "Description": f"{config.TOOL}: SageMaker endpoint {endpoint} (python -m deploy template)",
        "Parameters": {
            ROLE_PARAMETER: {
                "Type": "String",
                "Description": ROLE_HELP,
                "Default": spec.role,
            },
            IMAGE_PARAMETER: {
                "Type": "String",
                "Description": "serving image in ECR, by digest (python -m deploy push)",
                "Default": spec.pinned_image or spec.image,
            },
        },
        "Resources": resources,
        "Outputs": {
            "EndpointName": {"Value": {"Fn::GetAtt": ["Endpoint", "EndpointName"]}},
            "EndpointArn": {"Value": {"Ref": "Endpoint"}},
        },
    }


def _resource(kind: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"Type": kind, "Properties": properties}


def _scaling(calls: list[Call]) -> dict[str, Any]:
    """register_scalable_target, put_scaling_policy (one or two) and put_metric_alarm as
    resources: the target's ResourceId names the stack's endpoint, policies point at the target,
    the alarm's action is the step policy (its Ref is its ARN)."""
    resources: dict[str, Any] = {}
    for call in calls:
        params = dict(call.params)
        if call.method == "register_scalable_target":
            params["ResourceId"] = {
                "Fn::Sub": f"endpoint/${{Endpoint.EndpointName}}/variant/{config.VARIANT_NAME}"
            }
            params["Tags"] = names.as_aws(
                params["Tags"]
            )  # the API takes a map, CloudFormation a list
            resources["ScalableTarget"] = _resource(
                "AWS::ApplicationAutoScaling::ScalableTarget", params
            )
        elif call.method == "put_scaling_policy":
            for key in TARGET_KEYS:
                params.pop(key)
            params["ScalingTargetId"] = {"Ref": "ScalableTarget"}
            name = "StepPolicy" if params["PolicyType"] == "StepScaling" else "TrackingPolicy"
            resources[name] = _resource("AWS::ApplicationAutoScaling::ScalingPolicy", params)
        elif call.method == "put_metric_alarm":
            params["AlarmActions"] = [{"Ref": "StepPolicy"}]
            resources["ScaleFromZeroAlarm"] = _resource("AWS::CloudWatch::Alarm", params)
        else:
            raise ValueError(f"no CloudFormation resource for {call.operation}")
    return resources


def render(template: dict[str, Any], yaml_format: bool) -> str:
    if yaml_format:
        # Through JSON first: shared lists would become YAML aliases, which CloudFormation refuses.
        plain = json.loads(json.dumps(template))
        text: str = yaml.safe_dump(plain, sort_keys=False, default_flow_style=False, width=100)
        return text
    return json.dumps(template, indent=2) + "\n"
