"""Resource names (a prefix and a UTC timestamp) and the tags every resource carries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from deploy import config
from deploy.errors import UserError

# SageMaker names: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}; the prefix leaves room for the suffixes.
PREFIX = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,29}$")
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
TAG = re.compile(r"^([\w.:/=+@-][\w .:/=+@-]{0,127})=([\w .:/=+@-]{0,256})$")


def stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")


def check_prefix(prefix: str) -> str:
    if not PREFIX.match(prefix):
        raise UserError(
            f"--prefix {prefix!r} is not usable in SageMaker names",
            "use 1-30 letters, digits and hyphens, starting with a letter or digit",
        )
    return prefix


def check_name(name: str, what: str) -> str:
    if not SAGEMAKER_NAME.match(name):
        raise UserError(
            f"{what} {name!r} is not a valid SageMaker name",
            "use 1-63 letters, digits and hyphens",
        )
    return name


@dataclass(frozen=True)
class DeploymentNames:
    model: str
    config: str
    endpoint: str


def deployment(prefix: str, when: str, endpoint: str | None = None) -> DeploymentNames:
    return DeploymentNames(
        model=f"{prefix}-model-{when}",
        config=f"{prefix}-config-{when}",
        endpoint=endpoint or f"{prefix}-{when}",
    )


def transform_job(prefix: str, when: str) -> str:
    return f"{prefix}-transform-{when}"


def parse_tags(pairs: list[str] | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs or []:
        found = TAG.match(pair)
        if not found or found.group(1).lower().startswith("aws:"):
            raise UserError(f"--tag {pair!r} is not KEY=VALUE", "for example --tag team=vision")
        tags[found.group(1)] = found.group(2)
    return tags


def tags_for(prefix: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our tags always win over user tags of the same key: `down` relies on them."""
    tags = dict(extra or {})
    tags[config.TAG_KEY] = config.TAG_VALUE
    tags[config.DEPLOYMENT_TAG_KEY] = prefix
    return tags


def as_aws(tags: dict[str, str], key: str = "Key", value: str = "Value") -> list[dict]:
    return [{key: k, value: v} for k, v in sorted(tags.items())]


def is_ours(tags: list[dict] | dict) -> bool:
    """True when the tag list (any AWS casing) carries managed-by=yolov7-sagemaker-deploy."""
    if isinstance(tags, dict):
        return tags.get(config.TAG_KEY) == config.TAG_VALUE
    for tag in tags:
        key = tag.get("Key", tag.get("key"))
        value = tag.get("Value", tag.get("value"))
        if key == config.TAG_KEY and value == config.TAG_VALUE:
            return True
    return False
