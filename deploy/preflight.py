"""Before `up` or `update` creates anything: does the variant fit the image and the model?

Three checks, each a refusal with one line (UserError, exit 2) and nothing created:
- the instance type exists: a known list of SageMaker real-time hosting types (there is no cheap
  API that says which types an account may host in a region; the list is offline and fast);
- its architecture matches the image's: Graviton families (ml.c6g, ml.c7g, ml.m7g, ...) are arm64,
  and an amd64 image there fails minutes later with "exec format error";
- a serverless memory size holds the model: the rule below, from docs/bench.md's peak RSS.

The image's architecture comes from ECR where ECR serves it (the image config blob, through
BatchGetImage and GetDownloadUrlForLayer), else from the platform `push` recorded in the state for
that very URI; where neither is known, a warning says it was not checked.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from deploy import encryption, image_check, network
from deploy.aws import buckets, client_config
from deploy.aws.not_found import is_not_found
from deploy.context import Context
from deploy.errors import UserError
from deploy.spec import Spec

X86, ARM = "amd64", "arm64"
_INTEL_6: tuple[str, ...] = ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge")
_INTEL_6 = (*_INTEL_6, "16xlarge", "24xlarge", "32xlarge")
_INTEL_7 = (*_INTEL_6, "48xlarge")
_C5 = ("large", "xlarge", "2xlarge", "4xlarge", "9xlarge", "18xlarge")
_M5 = ("large", "xlarge", "2xlarge", "4xlarge", "12xlarge", "24xlarge")
_GRAVITON = ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge")
_GPU = ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge")
# SageMaker real-time hosting families: architecture and sizes (from AWS's instance type pages).
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "t2": (X86, ("medium", "large", "xlarge", "2xlarge")),
    "m4": (X86, ("xlarge", "2xlarge", "4xlarge", "10xlarge", "16xlarge")),
    "c4": (X86, ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge")),
    "c5": (X86, _C5),
    "c5d": (X86, _C5),
    "m5": (X86, _M5),
    "m5d": (X86, _M5),
    "r5": (X86, _M5),
    "r5d": (X86, _M5),
    "c6i": (X86, _INTEL_6),
    "m6i": (X86, _INTEL_6),
    "r6i": (X86, _INTEL_6),
    "c7i": (X86, _INTEL_7),
    "m7i": (X86, _INTEL_7),
    "r7i": (X86, _INTEL_7),
    "c6g": (ARM, _GRAVITON),
    "c6gd": (ARM, _GRAVITON),
    "c6gn": (ARM, _GRAVITON),
    "m6g": (ARM, _GRAVITON),
    "m6gd": (ARM, _GRAVITON),
    "r6g": (ARM, _GRAVITON),
    "r6gd": (ARM, _GRAVITON),
    "c7g": (ARM, _GRAVITON),
    "m7g": (ARM, _GRAVITON),
    "r7g": (ARM, _GRAVITON),
    "g4dn": (X86, _GPU),
    "g5": (X86, (*_GPU, "24xlarge", "48xlarge")),
    "p3": (X86, ("2xlarge", "8xlarge", "16xlarge")),
    "inf1": (X86, ("xlarge", "2xlarge", "6xlarge", "24xlarge")),
    "inf2": (X86, ("xlarge", "8xlarge", "24xlarge", "48xlarge")),
}
KNOWN_TYPES = sorted(f"ml.{f}.{s}" for f, (_, sizes) in FAMILIES.items() for s in sizes)
GRAVITON_FAMILY = re.compile(r"^[a-z]+\d+g[a-z]*$")
WELL_FORMED = re.compile(r"^ml\.[a-z][a-z0-9-]*\.(?:medium|large|metal|\d*xlarge)$")

# Serverless memory: peak RSS of our server in docs/bench.md (issue 6's run; the later noisy run
# agrees: 281 and 706 MB) is 283 MB for yolov7-tiny (24.3 MB ONNX) and 711 MB for yolov7
# (147.6 MB ONNX, 36.91 M float32 weights), at concurrency 4-8. A line through both points:
# RSS ~ 199 MB + 3.47 x the ONNX size (weights, onnxruntime's arenas, the Python process). Since
# then a small model runs in two onnxruntime sessions sharing one arena (serve/runtimes/layout.py:
# 327 MB peak for yolov7-tiny FP32, 268 MB INT8; yolov7 FP32 709 MB), so the base is raised to
# 300 MB, which covers them (384 and 812 MB). The OpenVINO image peaks higher with its second
# compile (yolov7-tiny 410-474 MB): still inside the smallest serverless size once the headroom is
# added. The endpoint needs that plus 25 % headroom (larger photos, the OS in the container),
# rounded up to a size SageMaker offers.
RSS_BASE_MB = 300.0
RSS_PER_ONNX_MB = 3.47
HEADROOM = 1.25
SERVERLESS_MEMORY = (1024, 2048, 3072, 4096, 5120, 6144)
ONNX_BYTES_METADATA = "onnx-bytes"  # written by `package` on the model.tar.gz object


def family_of(instance_type: str) -> str:
    parts = instance_type.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "ml" else ""


def architecture_of(instance_type: str) -> str | None:
    found = FAMILIES.get(family_of(instance_type))
    if found:
        return found[0]
    # Families not listed yet: Graviton's are named with a g after the generation (c8g, m8gd).
    return ARM if GRAVITON_FAMILY.match(family_of(instance_type)) else None


def vcpus(instance_type: str) -> int:
    """vCPUs from the size: large 2, xlarge 4, Nxlarge 4N (ml.t2.large is 2)."""
    size = instance_type.rsplit(".", 1)[-1]
    if size in ("medium", "large") or instance_type == "ml.t2.large":
        return 2
    if size == "xlarge":
        return 4
    return 4 * int(size.removesuffix("xlarge") or 1)


def check_instance_type(instance_type: str, log: Callable[[str], None] | None = None) -> None:
    """Refuse a typo of a known type or an unknown size of a known family; a well-formed type of
    a family this list does not know (AWS adds families) is let through with a warning."""
    family = FAMILIES.get(family_of(instance_type))
    if family and instance_type.rsplit(".", 1)[-1] in family[1]:
        return
    close = difflib.get_close_matches(instance_type, KNOWN_TYPES, n=3, cutoff=0.75)
    if family is None and WELL_FORMED.match(instance_type):
        if log:
            near = f" (did you mean {' or '.join(close)}?)" if close else ""
            log(
                f"warning: {instance_type} is not in this tool's list of SageMaker hosting types "
                f"(deploy/preflight.py){near}; SageMaker will say if it does not exist"
            )
        return
    hint = f"did you mean {' or '.join(close)}" if close else "for example ml.c6i.xlarge"
    raise UserError(
        f"--instance-type {instance_type} is not a SageMaker hosting instance type", hint
    )


def platform_architecture(platform: str | None) -> str | None:
    """linux/arm64 -> arm64; linux/amd64 -> amd64 (x86_64 and aarch64 spelled as Docker does)."""
    if not platform:
        return None
    arch = platform.split("/")[1] if "/" in platform else platform
    return {"x86_64": X86, "aarch64": ARM}.get(arch, arch)


@dataclass
class ImageArchitecture:
    architecture: str | None
    source: str  # where it was read, or why it is unknown


def _config_blob(ecr: Any, image: image_check.EcrImage) -> dict:
    """The image config (its "architecture" field) through ECR's own API."""
    found = ecr.batch_get_image(
        registryId=image.account,
        repositoryName=image.repository,
        imageIds=[image.image_id],
        acceptedMediaTypes=[image_check.DOCKER_V2S2],
    )["images"]
    manifest = json.loads(found[0]["imageManifest"])
    url = ecr.get_download_url_for_layer(
        registryId=image.account,
        repositoryName=image.repository,
        layerDigest=manifest["config"]["digest"],
    )["downloadUrl"]
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(url, timeout=20) as answer:
        return json.loads(answer.read(1 << 20))


def _single_try_ecr(ctx: Context) -> Any:
    """ECR without retries: where the config is not served (another registry API, an emulator),
    the fallback is immediate instead of a retried wait."""
    retries = {"mode": "standard", "total_max_attempts": 1}
    return ctx.aws.session.client(
        "ecr", region_name=ctx.aws.region, config=client_config(retries=retries)
    )


def image_architecture(ctx: Context, uri: str, ecr: Any = None) -> ImageArchitecture:
    image = image_check.parse(uri)
    try:
        config_blob = _config_blob(ecr or _single_try_ecr(ctx), image)
        if config_blob.get("architecture"):
            return ImageArchitecture(
                platform_architecture(config_blob["architecture"]), "the image config in ECR"
            )
    except (ClientError, OSError, ValueError, KeyError, IndexError, TypeError):
        pass  # ECR did not serve the config (moto does not): fall back to what `push` recorded
    recorded = ctx.state.get("image") or {}
    for arch, pushed in (recorded.get("architectures") or {}).items():
        if pushed == uri:
            return ImageArchitecture(arch, f"`push --platform linux/{arch}`")
    if recorded.get("uri") == uri and recorded.get("platform"):
        return ImageArchitecture(
            platform_architecture(recorded["platform"]),
            f"`push --platform {recorded['platform']}`",
        )
    return ImageArchitecture(None, "neither ECR nor the state says")


def check_architecture(ctx: Context, uri: str, instance_type: str | None) -> None:
    """instance_type None: serverless, which runs on x86."""
    wanted = architecture_of(instance_type) if instance_type else X86
    where = instance_type or "serverless inference"
    found = image_architecture(ctx, uri)
    if found.architecture is None:
        ctx.log(f"warning: the architecture of {uri} is not known ({found.source}): not checked")
        return
    if wanted and found.architecture != wanted:
        graviton = " (Graviton)" if wanted == ARM else ""
        raise UserError(
            f"image {uri} is {found.architecture} (from {found.source}), but {where} is "
            f"{wanted}{graviton}: the container would fail with 'exec format error'",
            f"push an {wanted} image (`python -m deploy push --platform linux/{wanted}`) or pick "
            f"an {found.architecture} instance type",
        )


def model_bytes(ctx: Context, model_data: str | None) -> int | None:
    """The ONNX size of the model the endpoint will serve; None when it is baked into the image."""
    if not model_data:
        return None
    recorded = ctx.state.get("model_data") or {}
    if recorded.get("uri") == model_data and recorded.get("onnx_bytes"):
        return int(recorded["onnx_bytes"])
    bucket, _, key = model_data.removeprefix("s3://").partition("/")
    account = ctx.aws.identity()["account"]
    try:
        # Another account's bucket is refused: SageMaker would otherwise load its model.
        with buckets.pinned(bucket, account):
            head = ctx.aws.client("s3").head_object(
                Bucket=bucket, Key=key, **buckets.owner(account)
            )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if is_not_found(exc):
            raise UserError(
                f"model data {model_data} does not exist", "run `python -m deploy package` first"
            ) from None
        ctx.log(f"warning: cannot read {model_data} ({code}): model size not checked")
        return None
    metadata = head.get("Metadata") or {}
    if metadata.get(ONNX_BYTES_METADATA, "").isdigit():
        return int(metadata[ONNX_BYTES_METADATA])
    # Not packaged by us: float weights barely compress, so the archive's size is close.
    return int(head.get("ContentLength") or 0) or None


def needed_serverless_mb(onnx_bytes: int) -> tuple[float, int]:
    """(estimated peak RSS in MB, smallest serverless memory size that holds it with headroom)."""
    rss = RSS_BASE_MB + RSS_PER_ONNX_MB * onnx_bytes / 1e6
    needed = rss * HEADROOM
    fits = next((size for size in SERVERLESS_MEMORY if size >= needed), 0)
    return rss, fits or math.ceil(needed)


def check_serverless_memory(ctx: Context, model_data: str | None, memory_mb: int) -> None:
    size = model_bytes(ctx, model_data)
    if size is None:
        ctx.log("note: the model is baked into the image: serverless memory not checked against it")
        return
    rss, fits = needed_serverless_mb(size)
    if memory_mb >= fits:
        return
    if fits > SERVERLESS_MEMORY[-1]:
        hint = "serve it from instances (--instance-type) instead"
    else:
        hint = f"pass --serverless-memory {fits}"
    raise UserError(
        f"--serverless-memory {memory_mb} MB is too small for the {size / 1e6:.0f} MB model: "
        f"the server peaks near {rss:.0f} MB (docs/bench.md: 300 MB + 3.47 x the ONNX size) and "
        f"needs {HEADROOM:.2f}x that, {rss * HEADROOM:.0f} MB",
        hint,
    )


def check(ctx: Context, spec: Spec) -> None:
    """All preflight checks for a Spec (deploy/spec.py), after image_check.check."""
    if spec.serverless_memory is not None:  # serverless
        check_serverless_memory(ctx, spec.model_data, spec.serverless_memory)
        check_architecture(ctx, spec.image, None)
        return
    check_instance_type(spec.instance_type or "", ctx.log)
    check_architecture(ctx, spec.image, spec.instance_type)


def network_and_key(ctx: Context, spec: Spec) -> Spec:
    """The VPC ids checked against EC2 and the key resolved to its ARN (UserError otherwise);
    a serverless endpoint's missing isolation said in the log. Nothing is created."""
    network.check(ctx.aws.client("ec2"), spec.vpc_subnets, spec.security_groups)
    if spec.kms_key:
        arn = encryption.resolve(ctx.aws.client("kms"), spec.kms_key, ctx.aws.region)
        spec = replace(spec, kms_key=arn)
    if spec.serverless and spec.network_isolation:
        ctx.log("network isolation: off, serverless endpoints cannot run isolated (use instances)")
    return spec
