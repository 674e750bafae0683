"""The container's environment: no secret in it, its values kept only where SageMaker keeps them.

A model's Environment is readable by anyone allowed sagemaker:DescribeModel, shown in the console,
and was copied into the local state file: no place for a password. `--env` names that look like a
secret are refused, pointing to AWS Secrets Manager (the container reads the secret at start with
the execution role's permission); a Secrets Manager ARN as the value is a reference, not the
secret, and passes. The state records the names only, so `update` reads the values it carries over
from the running model (`running`), never from the file.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError

from deploy import config
from deploy.aws.not_found import is_not_found
from deploy.errors import UserError

# Name parts (split at _ - . and lower-to-upper case changes) that mean "secret" on their own...
SECRET_PARTS = frozenset(
    {"SECRET", "SECRETS", "TOKEN", "TOKENS", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL",
     "CREDENTIALS", "CREDS", "PRIVATE", "KEY", "KEYS", "APIKEY", "ACCESSKEY", "PRIVATEKEY"}
)  # fmt: skip
# ...and words that mean it inside a part too (DBPASSWORD, GHTOKEN, CLIENTSECRET).
SECRET_INSIDE = ("SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
SECRET_ENDINGS = ("TOKEN", "APIKEY", "ACCESSKEY", "PRIVATEKEY")
# The server's own settings are never secrets (tests hold serve/config.py's names to this check).
OURS = frozenset(config.SERVE_ENV.values())
SECRET_REFERENCE = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+$"
)
_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def looks_secret(name: str) -> bool:
    """True when a part of `name` (case-insensitively) says it holds a secret."""
    if name in OURS:
        return False
    parts = [p.upper() for chunk in re.split(r"[^A-Za-z0-9]+", name) for p in _PARTS.findall(chunk)]
    parts += [chunk.upper() for chunk in re.split(r"[^A-Za-z0-9]+", name) if chunk]
    return any(
        part in SECRET_PARTS
        or any(word in part for word in SECRET_INSIDE)
        or part.endswith(SECRET_ENDINGS)
        for part in parts
    )


def check_pair(name: str, value: str) -> None:
    """Refuse `--env NAME=VALUE` when NAME looks like a secret and VALUE is not a reference."""
    if looks_secret(name) and not SECRET_REFERENCE.match(value):
        raise UserError(
            f"--env {name}: the name looks like a secret, and a model's environment is readable by "
            "anyone allowed sagemaker:DescribeModel",
            "store it in AWS Secrets Manager, allow the execution role "
            "secretsmanager:GetSecretValue on it and have the container read it at start "
            f"(pass its ARN: --env {name}=arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)",
        )


def running(sm: Any, model: str) -> dict[str, str]:
    """The Environment of the model the endpoint runs (sagemaker:DescribeModel)."""
    try:
        found = sm.describe_model(ModelName=model)
    except ClientError as exc:
        if is_not_found(exc):
            raise UserError(
                f"model {model} no longer exists, so its environment cannot be carried over",
                "run `down`, then `up` again with every --env",
            ) from exc
        raise
    container = found.get("PrimaryContainer") or (found.get("Containers") or [{}])[0]
    return dict(container.get("Environment") or {})
