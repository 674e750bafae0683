"""Multi-model endpoints: one endpoint, many models under one S3 prefix, loaded on demand.

SageMaker's side: the model is created with `Mode: MultiModel` and `ModelDataUrl` the prefix
(`s3://BUCKET/PREFIX/`); an invocation names its model with `TargetModel` (`NAME.tar.gz`, a key
under the prefix); SageMaker downloads and unpacks that archive on an instance and asks the
container to load it (`POST /models`, serve/models_api.py), unloading idle models when the
container answers 507. The container learns it is one from `SAGEMAKER_MULTI_MODEL=true`.

This tool's side: `models add NAME` packs an ONNX file (exported first from a checkpoint when one
is given) as `NAME.tar.gz` under the prefix, in a bucket made as `package` makes it, encrypted with
the same KMS key when one is given; `models list` and `models remove` read and delete there. A
model added after `up` is served at once: the endpoint reads the prefix at each cache miss.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from deploy import artifacts, encryption, model_bucket, names
from deploy.aws import buckets
from deploy.context import Context
from deploy.errors import UserError
from deploy.schema import ModelsRecord

ENV = "SAGEMAKER_MULTI_MODEL"
SUFFIX = ".tar.gz"
# A key under the prefix, and what TargetModel names: letters, digits, dot, dash, underscore.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
EXPORT_TIMEOUT_S = 1800


def check_name(name: str) -> str:
    """NAME as `models add` and `invoke --model` take it (without .tar.gz); UserError else."""
    bare = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    if not MODEL_NAME.match(bare):
        raise UserError(
            f"model name {name[:120]!r} is not allowed",
            "use 1-100 letters, digits, '.', '-' or '_', starting with a letter or digit",
        )
    return bare


def target_model(name: str) -> str:
    """invoke_endpoint's TargetModel for NAME: the archive's key relative to the prefix."""
    return check_name(name) + SUFFIX


def parse_prefix(uri: str) -> tuple[str, str]:
    """s3://BUCKET/PREFIX/ -> (BUCKET, PREFIX/); UserError for anything else."""
    if not uri.startswith("s3://") or not uri.endswith("/"):
        raise UserError(
            f"models prefix {uri!r} is not an s3://BUCKET/PREFIX/ URI",
            "end it with '/': SageMaker loads NAME.tar.gz from under it",
        )
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket or not prefix or "//" in prefix:
        raise UserError(f"models prefix {uri!r} is not an s3://BUCKET/PREFIX/ URI")
    return bucket, prefix


def check_spec(spec: Any) -> None:
    """A multi-model Spec's own rules (deploy/spec.py calls this from check())."""
    if spec.serverless:
        raise UserError(
            "serverless endpoints cannot serve multiple models",
            "drop --serverless-memory, or --multi-model",
        )
    if spec.async_inference:
        raise UserError("a multi-model endpoint is real-time here", "drop --async")
    if not spec.model_data:
        raise UserError("a multi-model endpoint needs its S3 prefix", "pass --models s3://B/P/")
    parse_prefix(spec.model_data)


def container_settings(environment: dict[str, str]) -> dict[str, Any]:
    """What a multi-model container adds to the single-model one."""
    return {
        "Mode": "MultiModel",
        "Environment": dict(sorted({**environment, ENV: "true"}.items())),
        "MultiModelConfig": {"ModelCacheSetting": "Enabled"},
    }


def prefix_for(ctx: Context, given: str | None) -> str:
    """--models, else the one recorded, else PREFIX/multi-models/ in `package`'s bucket."""
    if given:
        parse_prefix(given)
        return given
    recorded = (ctx.state.get("models") or {}).get("uri")
    if recorded:
        return recorded
    aws = ctx.aws
    bucket = artifacts.default_bucket(ctx.name_prefix, aws.identity()["account"], aws.region)
    return f"s3://{bucket}/{ctx.name_prefix}/multi-models/"


def record_prefix(ctx: Context, uri: str) -> None:
    """Remember the prefix an endpoint loads from, for `models` (kept if already recorded)."""
    recorded: ModelsRecord = ctx.state.get("models") or {}
    if recorded.get("uri") == uri:
        return
    bucket, prefix = parse_prefix(uri)
    ctx.state["models"] = {"uri": uri, "bucket": bucket, "prefix": prefix}
    ctx.save()


@dataclass(frozen=True)
class Stored:
    name: str
    size: int
    modified: datetime


def export_checkpoint(weights: Path, img_size: int | None, dest: Path) -> Path:
    """`python -m export` on a checkpoint (its own process: torch stays out of deploy)."""
    if not weights.is_file():
        raise UserError(f"no checkpoint at {weights}")
    command = [sys.executable, "-m", "export", "--weights", str(weights), "--output", str(dest)]
    if img_size is not None:
        command += ["--img-size", str(img_size)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise UserError(
            f"exporting {weights.name} failed: {lines[-1][:300]}",
            "install requirements-export.txt, or export yourself and pass --onnx",
        )
    return dest


def add(
    ctx: Context,
    name: str,
    onnx: Path | None,
    weights: Path | None,
    img_size: int | None,
    prefix_uri: str | None,
    kms_key: str | None,
) -> str:
    """Pack the model as NAME.tar.gz under the prefix; its s3:// URI."""
    name = check_name(name)
    if (onnx is None) == (weights is None):
        raise UserError("give the model as --onnx FILE or --weights CHECKPOINT")
    if img_size is not None and weights is None:
        raise UserError("--img-size is for --weights (an ONNX file has its size)")
    if onnx is not None:
        artifacts.check_model_file(onnx)
    aws = ctx.aws
    recorded: ModelsRecord = ctx.state.get("models") or {}
    uri = prefix_for(ctx, prefix_uri)
    bucket, prefix = parse_prefix(uri)
    key_arn = kms_key or recorded.get("kms_key")
    if key_arn:
        key_arn = encryption.resolve(aws.client("kms"), key_arn, aws.region)
    s3 = aws.client("s3")
    account = aws.identity()["account"]
    tags = names.tags_for(ctx.name_prefix)
    with tempfile.TemporaryDirectory() as tmp:
        if weights is not None:
            ctx.log(f"exporting {weights.name} to ONNX")
            onnx = export_checkpoint(weights, img_size, Path(tmp) / f"{name}.onnx")
        assert onnx is not None
        created = model_bucket.ensure(s3, bucket, account, aws.region, tags, key_arn)
        if created:
            ctx.log(f"created S3 bucket {bucket} (private, TLS only, encrypted, tagged)")
        archive = artifacts.build_archive(onnx, Path(tmp) / f"{name}{SUFFIX}")
        key = f"{prefix}{name}{SUFFIX}"
        ctx.log(f"uploading {onnx.name} as s3://{bucket}/{key}")
        with buckets.pinned(bucket, account):
            extra = {
                **artifacts.upload_args(onnx, artifacts.model_sha256(onnx), tags),
                **buckets.owner(account),
                **encryption.sse_kms(key_arn),
            }
            s3.upload_file(str(archive), bucket, key, ExtraArgs=extra)
    record: ModelsRecord = {
        "uri": uri,
        "bucket": bucket,
        "prefix": prefix,
        "kms_key": key_arn,
        "bucket_created": bool(recorded.get("bucket_created")) or created,
    }
    ctx.state["models"] = record
    ctx.save()
    return f"s3://{bucket}/{key}"


def listing(ctx: Context, prefix_uri: str | None) -> tuple[str, list[Stored]]:
    """The prefix and the models under it (NAME.tar.gz directly under it), by name."""
    uri = prefix_for(ctx, prefix_uri)
    bucket, prefix = parse_prefix(uri)
    s3, account = ctx.aws.client("s3"), ctx.aws.identity()["account"]
    found: list[Stored] = []
    try:
        with buckets.pinned(bucket, account):
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, **buckets.owner(account)
            )
            for page in pages:
                for item in page.get("Contents", []):
                    rest = item["Key"][len(prefix) :]
                    if "/" not in rest and rest.endswith(SUFFIX):
                        stored = Stored(rest[: -len(SUFFIX)], item["Size"], item["LastModified"])
                        found.append(stored)
    except ClientError as exc:
        if (exc.response.get("Error") or {}).get("Code") == "NoSuchBucket":
            return uri, []
        raise
    return uri, sorted(found, key=lambda s: s.name)


def remove(ctx: Context, name: str, prefix_uri: str | None) -> str:
    """Delete NAME.tar.gz from the prefix (an instance that holds it loaded keeps serving it
    until SageMaker unloads it); its URI. UserError when there is no such model."""
    name = check_name(name)
    uri, stored = listing(ctx, prefix_uri)
    if name not in {s.name for s in stored}:
        have = ", ".join(s.name for s in stored[:10]) or "none"
        raise UserError(f"no model {name} under {uri}", f"models there: {have}")
    bucket, prefix = parse_prefix(uri)
    account = ctx.aws.identity()["account"]
    key = f"{prefix}{name}{SUFFIX}"
    with buckets.pinned(bucket, account):
        ctx.aws.client("s3").delete_object(Bucket=bucket, Key=key, **buckets.owner(account))
    return f"s3://{bucket}/{key}"


def summary(stored: list[Stored]) -> str:
    """`models list`'s table."""
    if not stored:
        return "no models"
    width = max(len(s.name) for s in stored)
    rows = [f"{'NAME':<{width}}  {'MB':>8}  UPLOADED"]
    for item in stored:
        when = item.modified.strftime("%Y-%m-%d %H:%M")
        rows.append(f"{item.name:<{width}}  {item.size / 1e6:>8.1f}  {when}")
    return "\n".join(rows)
