"""Every constant and every environment variable `deploy` reads, in one place.

Nothing else in the package calls `os.environ`: boto3 reads its own variables (AWS_PROFILE,
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, credentials...) through its standard chain.
"""

from __future__ import annotations

import os
from pathlib import Path

from deploy import __version__

TOOL = "yolov7-sagemaker-deploy"
USER_AGENT = f"{TOOL}/{__version__}"

# Every resource this tool creates carries this tag; `down` deletes nothing without it.
TAG_KEY = "managed-by"
TAG_VALUE = TOOL
# A second tag groups the resources of one deployment (its name prefix).
DEPLOYMENT_TAG_KEY = "yolov7-deployment"

DEFAULT_PREFIX = "yolov7"
DEFAULT_STATE = Path(".deploy") / "state.json"
DEFAULT_INSTANCE_TYPE = "ml.c6i.xlarge"
DEFAULT_STARTUP_TIMEOUT_S = 600
VARIANT_NAME = "AllTraffic"
DEFAULT_PLATFORM = "linux/amd64"

# Where SageMaker writes the container's logs (CloudWatch Logs).
ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints/{name}"
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"

# The Price List API answers in these regions only; us-east-1 is the documented default.
PRICING_REGION = "us-east-1"
HOURS_PER_MONTH = 730

# Container environment variables understood by `python -m serve` (see the README's
# configuration table). `up --conf 0.3` becomes YOLO_CONF=0.3 in the model's Environment.
SERVE_ENV = {
    "conf": "YOLO_CONF",
    "iou": "YOLO_IOU",
    "max_det": "YOLO_MAX_DET",
    "threads": "ORT_INTRA_OP_THREADS",
}

# --- environment variables read by deploy itself ---------------------------------------------
# The SageMaker execution role ARN, when `--role` is not given (used by `up` and `update`).
ENV_ROLE = "SAGEMAKER_ROLE_ARN"
# The container CLI for `push` ("docker" or "podman"), when `--cli` is not given.
ENV_CONTAINER_CLI = "DEPLOY_CONTAINER_CLI"
# botocore's own retry variables; read here so that our explicit Config does not override them.
ENV_MAX_ATTEMPTS = "AWS_MAX_ATTEMPTS"
ENV_RETRY_MODE = "AWS_RETRY_MODE"

DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_RETRY_MODE = "standard"
RETRY_MODES = ("standard", "adaptive", "legacy")


def role_from_env() -> str | None:
    return os.environ.get(ENV_ROLE) or None


def container_cli_from_env() -> str | None:
    return os.environ.get(ENV_CONTAINER_CLI) or None


def retry_settings() -> dict:
    """botocore's `retries` setting: standard mode, 8 attempts in all (first try included), unless
    AWS_RETRY_MODE / AWS_MAX_ATTEMPTS say otherwise (same meaning as in botocore)."""
    mode = os.environ.get(ENV_RETRY_MODE) or DEFAULT_RETRY_MODE
    if mode not in RETRY_MODES:
        mode = DEFAULT_RETRY_MODE
    try:
        attempts = int(os.environ.get(ENV_MAX_ATTEMPTS) or DEFAULT_MAX_ATTEMPTS)
    except ValueError:
        attempts = DEFAULT_MAX_ATTEMPTS
    return {"mode": mode, "total_max_attempts": max(1, attempts)}
