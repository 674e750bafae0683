"""The state file's declared shape, checked when read, and the upgrades from older versions.

Every record is a TypedDict: mypy checks each key the code reads or writes, and `check` holds a
file read from disk to the same declaration, so a typo or a hand edit is refused at the boundary
with one line naming the key (`endpoint.instance_count is "two", expected int`) instead of
turning into a None three calls later. Keys are optional (`total=False`): a record is written
piece by piece as its resources are created, so that an interrupted command still leaves a state
that `down` can walk.

Version 2 differs from version 1 in one key: `autoscaling.mode` is always written ("invocations"
for real-time target tracking, "backlog" for an asynchronous endpoint's queue), so the autoscaling
implementation is chosen from the record itself. Version 3 (this tool) records the container
environment's names only (`endpoint.environment_names`), never its values: `update` reads those
from the running model. `upgrade` brings a version-1 or -2 file to version 3, and StateFile.read
writes it back at once, so an older file's environment values leave the disk on the first read.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, TypedDict, Union

from deploy import config
from deploy.errors import UserError

VERSION = 3
READABLE_VERSIONS = (1, 2, 3)

AutoscalingMode = Literal["invocations", "backlog"]
ResourceKind = Literal["model", "endpoint-config", "endpoint", "transform-job"]


class ImageRecord(TypedDict, total=False):
    """`push`: the image the endpoint runs and the ECR repository it lives in."""

    uri: str
    repository: str
    repository_arn: str
    repository_created: bool  # this tool made the repository (`down --delete-repository`)
    kms_key: str  # `push --kms-key`: the new repository's encryption key ARN
    pushed_at: str
    platform: str  # what the preflight checks instance types against
    digest: str  # sha256:... as ECR holds the pushed tag (`template` pins the image with it)
    sbom: str | None  # its Python packages' CycloneDX SBOM, a file beside the state; None: none
    # each architecture's latest image in this repository (amd64, arm64): `up`/`update` pick by
    # the instance family, the preflight reads the architecture of a URI found here
    architectures: dict[str, str]


class ModelDataRecord(TypedDict, total=False):
    """`package`: the model.tar.gz in S3."""

    uri: str
    bucket: str
    key: str
    source: str  # the .onnx packed
    sha256: str
    onnx_bytes: int
    bucket_created: bool
    uploaded_at: str
    kms_key: str  # `package --kms-key`: the upload's SSE-KMS key ARN


class ServerlessRecord(TypedDict, total=False):
    memory_mb: int
    max_concurrency: int


class AsyncRecord(TypedDict, total=False):
    """`up --async`: SageMaker's AsyncInferenceConfig and the S3 folders it names."""

    config: dict[str, Any]
    input: str
    output: str
    failure: str


class PendingUpdateRecord(TypedDict, total=False):
    """`update` sent (or may have sent) update_endpoint for this config; not yet known to serve."""

    config: str
    model: str
    started_at: str
    recorded: dict[str, Any]  # the endpoint record's Spec fields once SageMaker runs it


class EndpointRecord(TypedDict, total=False):
    """`up` / `update`: the endpoint and what it runs (deploy.spec.Spec's fields, as recorded)."""

    name: str
    arn: str
    config: str  # the endpoint config it runs
    model: str
    variant: str
    status: str | None  # as SageMaker last described it
    image: str  # as given (usually by tag)
    pinned_image: str | None  # image by digest, what the model names; None: ECR not readable
    role: str
    model_data: str | None
    environment_names: list[str]  # the container's variables; values live only in the model
    instance_type: str | None
    instance_count: int | None
    serverless: ServerlessRecord | None
    startup_timeout: int
    async_inference: AsyncRecord | None
    data_capture: dict[str, Any] | None  # SageMaker's DataCaptureConfig, as sent
    vpc_subnets: list[str]  # VpcConfig.Subnets ([] outside a VPC)
    security_groups: list[str]  # VpcConfig.SecurityGroupIds
    network_isolation: bool  # asked for; serverless endpoints run without (SageMaker's limit)
    kms_key: str | None  # the resolved key ARN: volume, capture, async output, async uploads
    multi_model: bool  # Mode MultiModel: model_data is the prefix of NAME.tar.gz (multi_models)
    created_at: str
    updated_at: str
    pending_update: PendingUpdateRecord  # an update whose outcome is not known yet


class AutoscalingRecord(TypedDict, total=False):
    """`autoscale`: the scalable target, its policy and (async at zero) the wake-up alarm."""

    resource_id: str
    mode: AutoscalingMode
    min: int
    max: int
    target: float
    scale_in_cooldown: int
    scale_out_cooldown: int
    policy: str
    policy_arn: str
    step_policy: str | None  # backlog at --min 0: +1 instance when requests wait
    alarm: str | None
    updated_at: str
    paused_for_update: bool  # deregistered by an unfinished `update`: register it again


class RollbackAlarmsRecord(TypedDict, total=False):
    """`update --rollback-alarms auto`: the alarms this tool made for a guarded update."""

    names: list[str]
    created: bool
    p99_ms: float
    how: str


class ModelsRecord(TypedDict, total=False):
    """`models add` / `up --multi-model`: the S3 prefix a multi-model endpoint loads from."""

    uri: str  # s3://BUCKET/PREFIX/
    bucket: str
    prefix: str
    kms_key: str | None  # what the archives were encrypted with (SSE-KMS), if anything
    bucket_created: bool


class TransformJobRecord(TypedDict, total=False):
    name: str
    input: str
    output: str
    status: str
    created_at: str


class ResourceRecord(TypedDict):
    """One created SageMaker resource (or transform job) in the ledger that `down` walks."""

    type: ResourceKind
    name: str
    arn: str | None


class State(TypedDict, total=False):
    version: int
    tool: str
    region: str
    prefix: str
    tags: dict[str, str]
    image: ImageRecord
    model_data: ModelDataRecord
    models: ModelsRecord
    endpoint: EndpointRecord
    autoscaling: AutoscalingRecord
    rollback_alarms: RollbackAlarmsRecord
    transform_jobs: list[TransformJobRecord]
    resources: list[ResourceRecord]


def empty() -> State:
    return {"version": VERSION, "tool": config.TOOL, "resources": [], "transform_jobs": []}


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """An older file as version 3: 1 -> 2 the autoscaling record says which kind it is, 2 -> 3
    the environment's values are dropped (names kept)."""
    if data.get("version") == 1:
        scaling = data.get("autoscaling")
        if isinstance(scaling, dict) and "mode" not in scaling:
            endpoint = data.get("endpoint")
            backlog = isinstance(endpoint, dict) and bool(endpoint.get("async_inference"))
            scaling["mode"] = "backlog" if backlog else "invocations"
        data["version"] = 2
    if data.get("version") == 2:
        endpoint = data.get("endpoint")
        if isinstance(endpoint, dict) and "environment" in endpoint:
            values = endpoint.pop("environment")
            endpoint["environment_names"] = sorted(values) if isinstance(values, dict) else []
        data["version"] = 3
    data.setdefault("resources", [])
    data.setdefault("transform_jobs", [])
    return data


def check(data: dict[str, Any], source: str) -> State:
    """`data` held to the declaration; a UserError naming the first key that does not fit."""
    problem = _mismatch(data, State, "")
    if problem:
        raise UserError(
            f"the state file {source} is not valid: {problem}",
            "fix or remove that key, or point --state elsewhere",
        )
    return typing.cast(State, data)


def _mismatch(value: Any, declared: Any, where: str) -> str | None:
    """What is wrong with `value` as a `declared`, or None when it fits."""
    origin = typing.get_origin(declared)
    if declared is Any:
        return None
    if typing.is_typeddict(declared):
        return _record_mismatch(value, declared, where)
    if origin in (Union, types.UnionType):
        options = typing.get_args(declared)
        if any(_mismatch(value, option, where) is None for option in options):
            return None
        return _wrong(value, declared, where)
    if origin is Literal:
        return None if value in typing.get_args(declared) else _wrong(value, declared, where)
    if origin is list:
        if not isinstance(value, list):
            return _wrong(value, declared, where)
        (item,) = typing.get_args(declared)
        for index, element in enumerate(value):
            found = _mismatch(element, item, f"{where}[{index}]")
            if found:
                return found
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return _wrong(value, declared, where)
        key_type, value_type = typing.get_args(declared)
        for key, element in value.items():
            found = _mismatch(key, key_type, f"{where} key {key!r}") or _mismatch(
                element, value_type, f"{where}.{key}"
            )
            if found:
                return found
        return None
    if declared is type(None):
        return None if value is None else _wrong(value, declared, where)
    if declared is float:  # JSON writes 200.0 as 200.0 but a hand edit may write 200
        fits = isinstance(value, int | float) and not isinstance(value, bool)
        return None if fits else _wrong(value, declared, where)
    if declared is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
        return None if fits else _wrong(value, declared, where)
    return None if isinstance(value, declared) else _wrong(value, declared, where)


def _record_mismatch(value: Any, declared: Any, where: str) -> str | None:
    if not isinstance(value, dict):
        return _wrong(value, declared, where)
    fields = typing.get_type_hints(declared)
    for key, element in value.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            return f"unknown key {path}"
        found = _mismatch(element, fields[key], path)
        if found:
            return found
    missing = sorted(declared.__required_keys__ - value.keys())
    if missing:
        return f"{where or 'the state'} has no {missing[0]}"
    return None


def _wrong(value: Any, declared: Any, where: str) -> str:
    return f"{where or 'the state'} is {_shown(value)}, expected {_type_name(declared)}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _type_name(declared: Any) -> str:
    if typing.is_typeddict(declared):
        return "an object"
    if typing.get_origin(declared) is Literal:
        return " or ".join(repr(option) for option in typing.get_args(declared))
    if typing.get_origin(declared) in (Union, types.UnionType):
        return " or ".join(_type_name(option) for option in typing.get_args(declared))
    if typing.get_origin(declared) is list:
        return "a list"
    if typing.get_origin(declared) is dict:
        return "an object"
    if declared is type(None):
        return "null"
    return getattr(declared, "__name__", str(declared))
