"""Models, endpoint configs and endpoints: `up`, `update`, and the pieces `status`/`down` use."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

from botocore.exceptions import ClientError

from deploy import config, image_check, names, preflight, rollout, scaling
from deploy.aws import ROLE_ARN
from deploy.errors import AwsError, UserError
from deploy.state import forget, now_iso, remember
from deploy.waiting import ProgressLine, elapsed, wait_for

SERVERLESS_MEMORY = (1024, 2048, 3072, 4096, 5120, 6144)
IMAGE = re.compile(r"^[\w.-]+(:\d+)?/[\w./-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$")
ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,1023}$")
# Statuses after which an update will not reach InService without someone's help.
STUCK = ("UpdateRollbackFailed",)


@dataclass
class Spec:
    """What a deployment runs: the container and the variant it runs on."""

    image: str
    role: str
    model_data: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    instance_type: str | None = config.DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    serverless_memory: int | None = None
    serverless_concurrency: int | None = None
    startup_timeout: int = config.DEFAULT_STARTUP_TIMEOUT_S
    # {"config": AsyncInferenceConfig, "input", "output", "failure"} (deploy/async_inference.py)
    async_inference: dict | None = None
    # DataCaptureConfig (deploy/capture.py), or None
    data_capture: dict | None = None

    @property
    def serverless(self) -> bool:
        return self.serverless_memory is not None

    def check(self) -> Spec:
        if not self.image or not IMAGE.match(self.image):
            raise UserError(
                f"image {self.image!r} is not a full image URI",
                "run `push` first or pass --image ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG",
            )
        if not self.role:
            raise UserError(
                "no SageMaker execution role",
                f"pass --role ARN or set {config.ENV_ROLE} (policy: iam/sagemaker-execution-role-"
                "policy.json)",
            )
        if not ROLE_ARN.match(self.role):
            raise UserError(f"--role {self.role!r} is not an IAM role ARN")
        if self.model_data and not (
            self.model_data.startswith("s3://") and self.model_data.endswith(".tar.gz")
        ):
            raise UserError(f"model data {self.model_data!r} is not an s3://.../*.tar.gz URI")
        for key in self.environment:
            if not ENV_KEY.match(key):
                raise UserError(f"environment variable name {key!r} is not valid")
        if len(self.environment) > 100:
            raise UserError("SageMaker allows at most 100 environment variables")
        if self.serverless and self.async_inference:
            raise UserError(
                "an asynchronous endpoint runs on instances, not serverless",
                "drop --serverless-memory, or drop --async",
            )
        if self.serverless and self.data_capture:
            raise UserError(
                "serverless endpoints do not support data capture",
                "drop --capture, or use instances",
            )
        if self.serverless:
            if self.serverless_memory not in SERVERLESS_MEMORY:
                raise UserError(
                    f"--serverless-memory {self.serverless_memory} is not allowed",
                    f"use one of {', '.join(map(str, SERVERLESS_MEMORY))} (MB)",
                )
            if not 1 <= (self.serverless_concurrency or 0) <= 200:
                raise UserError("--serverless-concurrency must be between 1 and 200")
        else:
            if not self.instance_type or not self.instance_type.startswith("ml."):
                raise UserError(
                    f"--instance-type {self.instance_type!r} is not a SageMaker instance type",
                    "for example ml.c6i.xlarge",
                )
            if self.instance_count < 1:
                raise UserError("--instance-count must be at least 1")
            if not 60 <= self.startup_timeout <= 3600:
                raise UserError("--startup-timeout must be between 60 and 3600 seconds")
        return self

    def variant(self, model_name: str) -> dict:
        variant = {
            "VariantName": config.VARIANT_NAME,
            "ModelName": model_name,
            "InitialVariantWeight": 1.0,
        }
        if self.serverless:
            variant["ServerlessConfig"] = {
                "MemorySizeInMB": self.serverless_memory,
                "MaxConcurrency": self.serverless_concurrency,
            }
        else:
            variant["InstanceType"] = self.instance_type
            variant["InitialInstanceCount"] = self.instance_count
            variant["ContainerStartupHealthCheckTimeoutInSeconds"] = self.startup_timeout
        return variant

    def container(self) -> dict:
        container = {"Image": self.image, "Mode": "SingleModel"}
        if self.model_data:
            container["ModelDataUrl"] = self.model_data
        if self.environment:
            container["Environment"] = dict(sorted(self.environment.items()))
        return container

    def recorded(self) -> dict:
        data = asdict(self)
        data["serverless"] = (
            {"memory_mb": self.serverless_memory, "max_concurrency": self.serverless_concurrency}
            if self.serverless
            else None
        )
        for key in ("serverless_memory", "serverless_concurrency"):
            data.pop(key)
        if self.serverless:
            data["instance_type"] = None
            data["instance_count"] = None
        return data

    @classmethod
    def from_recorded(cls, data: dict) -> Spec:
        serverless = data.get("serverless") or {}
        return cls(
            image=data.get("image") or "",
            role=data.get("role") or "",
            model_data=data.get("model_data"),
            environment=dict(data.get("environment") or {}),
            instance_type=data.get("instance_type") or config.DEFAULT_INSTANCE_TYPE,
            instance_count=data.get("instance_count") or 1,
            serverless_memory=serverless.get("memory_mb"),
            serverless_concurrency=serverless.get("max_concurrency"),
            startup_timeout=data.get("startup_timeout") or config.DEFAULT_STARTUP_TIMEOUT_S,
            async_inference=data.get("async_inference"),
            data_capture=data.get("data_capture"),
        )


def log_group(endpoint: str) -> str:
    return config.ENDPOINT_LOG_GROUP.format(name=endpoint)


def logs_hint(endpoint: str, region: str) -> str:
    group = log_group(endpoint)
    return (
        f"the container's logs are in CloudWatch log group {group} "
        f"(aws logs tail {group} --region {region} --since 1h)"
    )


def instances(response: dict) -> str:
    variants = response.get("ProductionVariants") or []
    if not variants:
        return ""
    variant = variants[0]
    if "CurrentServerlessConfig" in variant:
        return "serverless"
    current = variant.get("CurrentInstanceCount")
    desired = variant.get("DesiredInstanceCount")
    if current is None and desired is None:
        return ""
    return f"{current if current is not None else 0}/{desired} instances"


def wait_endpoint(sm, endpoint: str, poll=None, timeout=None, stream=None, detail=instances):
    """Until InService; `detail` words the progress line (rollout.phase during a guarded one)."""
    return wait_for(
        sm,
        "endpoint_in_service",
        {"EndpointName": endpoint},
        label=f"endpoint {endpoint}",
        status_of=lambda r: r.get("EndpointStatus", "?"),
        detail=detail,
        poll=poll,
        timeout=timeout,
        progress=ProgressLine(stream),
        stuck=STUCK,
    )


@dataclass
class Outcome:
    endpoint: str
    config: str
    model: str
    status: str
    seconds: float | None = None
    waited: bool = True
    deleted: list[str] = field(default_factory=list)


def create_model_and_config(ctx, sm, spec: Spec, found, tags: dict[str, str]) -> None:
    """The model and its endpoint config, each recorded in the state file as soon as it exists,
    so that an interrupted `up` or `update` can still be cleaned by `down`."""
    model_arn = sm.create_model(
        ModelName=found.model,
        ExecutionRoleArn=spec.role,
        PrimaryContainer=spec.container(),
        Tags=names.as_aws(tags),
    )["ModelArn"]
    remember(ctx.state, "model", found.model, model_arn)
    ctx.save()
    ctx.log(f"created model {found.model}")
    extra = {"AsyncInferenceConfig": spec.async_inference["config"]} if spec.async_inference else {}
    if spec.data_capture:
        extra["DataCaptureConfig"] = spec.data_capture
    config_arn = sm.create_endpoint_config(
        EndpointConfigName=found.config,
        ProductionVariants=[spec.variant(found.model)],
        Tags=names.as_aws(tags),
        **extra,
    )["EndpointConfigArn"]
    remember(ctx.state, "endpoint-config", found.config, config_arn)
    ctx.save()
    ctx.log(f"created endpoint config {found.config} ({describe_spec(spec)})")


def up(
    ctx,
    spec: Spec,
    endpoint_name: str | None = None,
    user_tags: dict[str, str] | None = None,
    wait: bool = True,
    poll: float | None = None,
    timeout: float | None = None,
    stream=None,
) -> Outcome:
    current = ctx.state.get("endpoint")
    if current:
        raise UserError(
            f"this state already holds endpoint {current['name']}",
            "run `update` to change it, `down` to remove it, or pass another --state",
        )
    spec.check()
    prefix = names.check_prefix(ctx.name_prefix)
    image_check.check(ctx, spec.image)
    preflight.check(ctx, spec)
    if endpoint_name:
        names.check_name(endpoint_name, "--endpoint-name")
    sm = ctx.aws.client("sagemaker")
    found = names.deployment(prefix, names.stamp(), endpoint_name)
    tags = names.tags_for(prefix, user_tags)
    ctx.state["prefix"] = prefix
    ctx.state["tags"] = tags

    create_model_and_config(ctx, sm, spec, found, tags)

    endpoint_arn = sm.create_endpoint(
        EndpointName=found.endpoint, EndpointConfigName=found.config, Tags=names.as_aws(tags)
    )["EndpointArn"]
    remember(ctx.state, "endpoint", found.endpoint, endpoint_arn)
    ctx.state["endpoint"] = {
        "name": found.endpoint,
        "arn": endpoint_arn,
        "config": found.config,
        "model": found.model,
        "variant": config.VARIANT_NAME,
        **spec.recorded(),
        "created_at": now_iso(),
        "updated_at": now_iso(),
    }
    ctx.save()
    ctx.log(f"creating endpoint {found.endpoint} (this takes a few minutes)")
    if not wait:
        return Outcome(found.endpoint, found.config, found.model, "Creating", waited=False)

    result = wait_endpoint(sm, found.endpoint, poll, timeout, stream)
    status = result.response.get("EndpointStatus", "?")
    ctx.state["endpoint"]["status"] = status
    ctx.save()
    if result.state != "success":
        reason = result.response.get("FailureReason") or "no reason given"
        raise AwsError(
            f"endpoint {found.endpoint} is {status} after {elapsed(result.seconds)}: {reason}",
            f"{logs_hint(found.endpoint, ctx.aws.region)}; remove it with `python -m deploy down`",
        )
    return Outcome(found.endpoint, found.config, found.model, status, result.seconds)


def describe_spec(spec: Spec) -> str:
    if spec.serverless:
        return (
            f"serverless {spec.serverless_memory} MB, max concurrency {spec.serverless_concurrency}"
        )
    text = f"{spec.instance_count} x {spec.instance_type}"
    return f"{text}, asynchronous" if spec.async_inference else text


def describe_endpoint(sm, name: str) -> dict | None:
    """describe_endpoint, or None when SageMaker has no such endpoint."""
    try:
        return sm.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def is_missing(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    message = error.get("Message", "")
    return code in ("ResourceNotFound", "ResourceNotFoundException") or (
        code == "ValidationException" and "Could not find" in message
    )


DESCRIBE = {
    "model": ("describe_model", "ModelName", "ModelArn", "delete_model"),
    "endpoint-config": (
        "describe_endpoint_config",
        "EndpointConfigName",
        "EndpointConfigArn",
        "delete_endpoint_config",
    ),
    "endpoint": ("describe_endpoint", "EndpointName", "EndpointArn", "delete_endpoint"),
}


def find(sm, kind: str, name: str) -> dict | None:
    describe, key, _, _ = DESCRIBE[kind]
    try:
        return getattr(sm, describe)(**{key: name})
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def tags_of(sm, arn: str) -> list[dict]:
    tags, token = [], None
    while True:
        kwargs = {"ResourceArn": arn}
        if token:
            kwargs["NextToken"] = token
        page = sm.list_tags(**kwargs)
        tags += page.get("Tags", [])
        token = page.get("NextToken")
        if not token:
            return tags


def delete_if_ours(sm, kind: str, name: str) -> str:
    """'deleted', 'absent' (already gone), or 'refused' (exists, but not tagged by this tool)."""
    found = find(sm, kind, name)
    if found is None:
        return "absent"
    _, key, arn_key, delete = DESCRIBE[kind]
    if not names.is_ours(tags_of(sm, found[arn_key])):
        return "refused"
    try:
        getattr(sm, delete)(**{key: name})
    except ClientError as exc:
        if is_missing(exc):
            return "absent"
        raise
    return "deleted"


def update(
    ctx,
    changes: dict,
    wait_poll: float | None = None,
    timeout: float | None = None,
    stream=None,
    rollout_plan: rollout.Plan | None = None,
) -> Outcome:
    """New model + config, update_endpoint, wait, then delete the old config and model.

    `changes` holds only what the user asked to change (Spec field names); everything else is
    carried over from the running deployment, so `update --image NEW` is enough.
    """
    current = ctx.state.get("endpoint")
    if not current:
        raise UserError("nothing is deployed in this state", "run `up` first")
    spec = replace(Spec.from_recorded(current), **changes)
    if "instance_type" in changes or "instance_count" in changes:
        spec = replace(spec, serverless_memory=None, serverless_concurrency=None)
    spec.check()
    image_check.check(ctx, spec.image)
    preflight.check(ctx, spec)
    sm = ctx.aws.client("sagemaker")
    endpoint = current["name"]
    live = describe_endpoint(sm, endpoint)
    if live is None:
        raise UserError(
            f"endpoint {endpoint} no longer exists",
            "run `down` to clear the state, then `up`",
        )
    if live["EndpointStatus"] != "InService":
        raise UserError(
            f"endpoint {endpoint} is {live['EndpointStatus']}, not InService",
            "wait for it (`status`) before updating",
        )
    autoscaling = ctx.state.get("autoscaling")
    if autoscaling and "instance_count" not in changes and not spec.serverless:
        # Keep the capacity the autoscaler chose: a new config must not drop instances under load.
        variant = (live.get("ProductionVariants") or [{}])[0]
        spec = replace(spec, instance_count=variant.get("DesiredInstanceCount") or 1)
    deployment, alarm_names = rollout.prepare(ctx, rollout_plan, spec, endpoint)

    prefix = ctx.name_prefix
    when = names.stamp()
    new = names.deployment(prefix, when, endpoint)
    if new.model == current["model"]:
        new = names.deployment(prefix, f"{when}-2", endpoint)
    tags = ctx.state.get("tags") or names.tags_for(prefix)

    create_model_and_config(ctx, sm, spec, new, tags)

    type_changes = spec.serverless or spec.instance_type != current.get("instance_type")
    paused_scaling = None
    if autoscaling and type_changes:
        # Application Auto Scaling rejects an update that changes a scaled variant's type.
        scaling.remove(ctx)
        paused_scaling = autoscaling
        ctx.log("deregistered autoscaling for the instance type change")

    guarded = {"DeploymentConfig": deployment} if deployment else {}
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=new.config, **guarded)
    ctx.log(f"updating endpoint {endpoint} to {new.config}; it keeps serving meanwhile")
    detail = rollout.phase if deployment else instances
    result = wait_endpoint(sm, endpoint, wait_poll, timeout, stream, detail=detail)
    live = result.response
    if result.state != "success" or live.get("EndpointConfigName") != new.config:
        reason = live.get("FailureReason") or "SageMaker rolled the update back"
        for kind, name in (("endpoint-config", new.config), ("model", new.model)):
            if delete_if_ours(sm, kind, name) in ("deleted", "absent"):
                forget(ctx.state, kind, name)
        ctx.save()
        if paused_scaling and not spec.serverless:
            scaling.apply(ctx, **scaling.settings_of(paused_scaling))
        alarm_said = rollout.rolled_back(ctx, alarm_names, live)
        raise AwsError(
            f"the update of {endpoint} failed ({live.get('EndpointStatus', '?')}): "
            f"{alarm_said or reason}; "
            f"it still runs {live.get('EndpointConfigName') or current['config']}",
            logs_hint(endpoint, ctx.aws.region),
        )

    deleted = []
    for kind, name in (("endpoint-config", current["config"]), ("model", current["model"])):
        outcome = delete_if_ours(sm, kind, name)
        if outcome in ("deleted", "absent"):
            forget(ctx.state, kind, name)
            deleted.append(name)
        else:
            ctx.log(f"kept {kind} {name}: it is not tagged {config.TAG_KEY}={config.TAG_VALUE}")
    ctx.state["endpoint"] = {
        **current,
        **spec.recorded(),
        "config": new.config,
        "model": new.model,
        "status": live.get("EndpointStatus"),
        "updated_at": now_iso(),
    }
    ctx.save()
    if paused_scaling and not spec.serverless:
        scaling.apply(ctx, **scaling.settings_of(paused_scaling))
        ctx.log("registered autoscaling again")
    elif paused_scaling:
        ctx.log("autoscaling removed: serverless endpoints scale by themselves")
    return Outcome(
        endpoint,
        new.config,
        new.model,
        live.get("EndpointStatus", "?"),
        result.seconds,
        deleted=deleted,
    )
