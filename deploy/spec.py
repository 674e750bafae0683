"""What a deployment runs (the container and the variant it runs on), checked before use."""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from deploy import config, encryption, multi_models, network
from deploy.aws import ROLE_ARN
from deploy.errors import UserError
from deploy.schema import AsyncRecord, EndpointRecord

SERVERLESS_MEMORY = (1024, 2048, 3072, 4096, 5120, 6144)
IMAGE = re.compile(r"^[\w.-]+(:\d+)?/[\w./-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$")
PINNED = re.compile(r"^[\w.-]+(:\d+)?/[\w./-]+@sha256:[0-9a-f]{64}$")
ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,1023}$")


@dataclass
class Spec:
    """What a deployment runs: the container and the variant it runs on."""

    image: str  # as given (a tag, usually): what `update` compares with what `push` recorded
    role: str
    model_data: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    instance_type: str | None = config.DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    serverless_memory: int | None = None
    serverless_concurrency: int | None = None
    startup_timeout: int = config.DEFAULT_STARTUP_TIMEOUT_S
    # {"config": AsyncInferenceConfig, "input", "output", "failure"} (deploy/async_inference.py)
    async_inference: AsyncRecord | None = None
    # DataCaptureConfig (deploy/capture.py), or None
    data_capture: dict[str, Any] | None = None
    # VpcConfig (deploy/network.py): both or neither, checked against EC2 before use
    vpc_subnets: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)
    # The container gets no network at all; serverless endpoints cannot have it (not sent there)
    network_isolation: bool = True
    # The resolved key ARN (deploy/encryption.py): volume, data capture and async output
    kms_key: str | None = None
    # `image` by the digest ECR holds (deploy/image_scan.py): what the model names, so that what
    # was checked is what runs; None where ECR could not be read (the model names `image`)
    pinned_image: str | None = None
    # A multi-model endpoint (deploy/multi_models.py): model_data is the S3 prefix of NAME.tar.gz
    multi_model: bool = False

    def __post_init__(self) -> None:
        # The key belongs inside the capture and async records (their own KmsKeyId); copies, so a
        # record shared with the state or another Spec is not changed. Runs again on replace().
        if self.data_capture:
            self.data_capture = _with_key(copy.deepcopy(self.data_capture), self.kms_key)
        if self.async_inference and "config" in self.async_inference:
            record = copy.deepcopy(self.async_inference)
            output = record["config"].setdefault("OutputConfig", {})
            _with_key(output, self.kms_key)
            self.async_inference = record

    @property
    def serverless(self) -> bool:
        return self.serverless_memory is not None

    def check(self) -> Spec:
        if not self.image or not IMAGE.match(self.image):
            raise UserError(
                f"image {self.image!r} is not a full image URI",
                "run `push` first or pass --image ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG",
            )
        if self.pinned_image and not PINNED.match(self.pinned_image):
            raise UserError(f"pinned image {self.pinned_image!r} is not REPO@sha256:DIGEST")
        if not self.role:
            raise UserError(
                "no SageMaker execution role",
                f"pass --role ARN or set {config.ENV_ROLE} (policy: iam/sagemaker-execution-role-"
                "policy.json)",
            )
        if not ROLE_ARN.match(self.role):
            raise UserError(f"--role {self.role!r} is not an IAM role ARN")
        if self.multi_model:
            multi_models.check_spec(self)
        elif self.model_data and not (
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
        if self.serverless and (self.vpc_subnets or self.security_groups):
            raise UserError(
                "serverless endpoints cannot run in a VPC",
                "drop --vpc-subnets/--security-groups (update: --no-vpc), or use instances",
            )
        network.check_shape(self.vpc_subnets, self.security_groups)
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
            if self.kms_key and encryption.has_local_nvme(self.instance_type):
                raise UserError(
                    f"{self.instance_type} keeps its ML storage on local NVMe, which SageMaker "
                    "encrypts itself and will not take --kms-key for",
                    "pick an instance type without local storage (e.g. ml.c6i), or drop --kms-key",
                )
        return self

    def model_settings(self) -> dict[str, Any]:
        """create_model's network arguments: VpcConfig and EnableNetworkIsolation."""
        settings: dict[str, Any] = {}
        vpc = network.vpc_config(self.vpc_subnets, self.security_groups)
        if vpc:
            settings["VpcConfig"] = vpc
        if not self.serverless:  # serverless endpoints cannot run isolated (SageMaker's limit)
            settings["EnableNetworkIsolation"] = self.network_isolation
        return settings

    def config_settings(self) -> dict[str, Any]:
        """create_endpoint_config's own arguments: KmsKeyId for the instances' ML volume."""
        return {"KmsKeyId": self.kms_key} if self.kms_key else {}

    def variant(self, model_name: str) -> dict[str, Any]:
        variant: dict[str, Any] = {
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

    def container(self) -> dict[str, Any]:
        image = self.pinned_image or self.image
        container: dict[str, Any] = {"Image": image, "Mode": "SingleModel"}
        if self.model_data:
            container["ModelDataUrl"] = self.model_data
        if self.environment:
            container["Environment"] = dict(sorted(self.environment.items()))
        if self.multi_model:
            container.update(multi_models.container_settings(container.get("Environment", {})))
        return container

    def recorded(self) -> EndpointRecord:
        """The state's record: the environment's names only (values stay in the model)."""
        data = asdict(self)
        data["environment_names"] = sorted(data.pop("environment"))
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
        return cast(EndpointRecord, data)

    @classmethod
    def from_recorded(cls, data: EndpointRecord, environment: dict[str, str]) -> Spec:
        """The recorded deployment; `environment` read from the running model (not recorded)."""
        serverless = data.get("serverless") or {}
        return cls(
            image=data.get("image") or "",
            role=data.get("role") or "",
            model_data=data.get("model_data"),
            environment=dict(environment),
            instance_type=data.get("instance_type") or config.DEFAULT_INSTANCE_TYPE,
            instance_count=data.get("instance_count") or 1,
            serverless_memory=serverless.get("memory_mb"),
            serverless_concurrency=serverless.get("max_concurrency"),
            startup_timeout=data.get("startup_timeout") or config.DEFAULT_STARTUP_TIMEOUT_S,
            async_inference=data.get("async_inference"),
            data_capture=data.get("data_capture"),
            vpc_subnets=list(data.get("vpc_subnets") or []),
            security_groups=list(data.get("security_groups") or []),
            # A record from before isolation existed gets the default (on) at its next update.
            network_isolation=bool(data.get("network_isolation", True)),
            kms_key=data.get("kms_key"),
            pinned_image=data.get("pinned_image"),
            multi_model=bool(data.get("multi_model", False)),
        )


def _with_key(record: dict[str, Any], key: str | None) -> dict[str, Any]:
    """`record` with KmsKeyId set to `key`, or without one when there is no key."""
    if key:
        record["KmsKeyId"] = key
    else:
        record.pop("KmsKeyId", None)
    return record


def describe(spec: Spec) -> str:
    """The variant in words, for the log."""
    if spec.serverless:
        return (
            f"serverless {spec.serverless_memory} MB, max concurrency {spec.serverless_concurrency}"
        )
    text = f"{spec.instance_count} x {spec.instance_type}"
    if spec.multi_model:
        text = f"{text}, multi-model ({spec.model_data})"
    return f"{text}, asynchronous" if spec.async_inference else text
