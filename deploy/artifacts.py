"""`package`: an ONNX file -> `model.tar.gz` (the file at the archive's root) -> S3.

An OpenVINO IR export (`python -m export --int8-format ir`) is two files, NAME.xml and NAME.bin:
both go to the archive's root, where the server finds the .xml and reads the .bin beside it.
SageMaker unpacks the archive into /opt/ml/model before the container starts. The archive is
optional: the image already carries a default model.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from deploy import config, encryption, model_bucket, names
from deploy.aws import buckets
from deploy.context import Context
from deploy.errors import UserError
from deploy.state import now_iso


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_parts(path: Path) -> list[Path]:
    """The files of a model: the .onnx, or an IR's .xml and the .bin beside it."""
    return [path, path.with_suffix(".bin")] if path.suffix.lower() == ".xml" else [path]


def model_sha256(path: Path) -> str:
    """sha256 of the model's bytes: the .onnx's, or an IR's .xml then .bin."""
    digest = hashlib.sha256()
    for part in model_parts(path):
        with part.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_bytes(path: Path) -> int:
    return sum(part.stat().st_size for part in model_parts(path))


def check_model_file(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"no model file at {path}", "pass the .onnx written by `python -m export`")
    if path.suffix.lower() not in (".onnx", ".xml"):
        raise UserError(
            f"{path} is not an .onnx file (or OpenVINO IR .xml)", "export the checkpoint first"
        )
    for part in model_parts(path)[1:]:
        if not part.is_file():
            raise UserError(
                f"{path} is OpenVINO IR but its weights {part.name} are not beside it",
                "an IR model is two files: NAME.xml and NAME.bin",
            )
    for part in model_parts(path):
        if part.stat().st_size == 0:
            raise UserError(f"{part} is empty")


def build_archive(model: Path, dest: Path) -> Path:
    """model.tar.gz holding the model's files (an .onnx, or an IR's .xml and .bin) at its root,
    with stable owner, mode and mtime."""
    check_model_file(model)
    with tarfile.open(dest, "w:gz") as archive:
        for part in model_parts(model):
            info = tarfile.TarInfo(part.name)
            info.size = part.stat().st_size
            info.mode = 0o644
            info.mtime = int(part.stat().st_mtime)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with part.open("rb") as handle:
                archive.addfile(info, handle)
    return dest


def archive_members(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return archive.getnames()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise UserError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise UserError(f"{uri!r} is not an s3://bucket/key URI")
    return bucket, key


def default_bucket(prefix: str, account: str, region: str) -> str:
    """Predictable on purpose (one per account and region): anyone may create a bucket of this
    name first, which is why every S3 call passes ExpectedBucketOwner (deploy/aws/buckets.py)
    and a bucket of another account is refused rather than used."""
    return f"{prefix}-sagemaker-{account}-{region}".lower()[:63]


@dataclass
class PackageResult:
    uri: str
    bucket: str
    key: str
    size: int
    sha256: str
    bucket_created: bool


def upload_args(onnx: Path, digest: str, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "ContentType": "application/gzip",
        "Tagging": urlencode(sorted(tags.items())),
        "Metadata": {
            "onnx-sha256": digest,
            "onnx-name": onnx.name,
            "onnx-bytes": str(model_bytes(onnx)),  # the preflight sizes serverless by it
        },
    }


def package(
    ctx: Context,
    onnx: Path,
    bucket: str | None = None,
    key: str | None = None,
    kms_key: str | None = None,
) -> PackageResult:
    """`kms_key`: the upload is SSE-KMS with it (resolved to its ARN and checked first)."""
    check_model_file(onnx)
    aws = ctx.aws
    s3 = aws.client("s3")
    if kms_key:
        kms_key = encryption.resolve(aws.client("kms"), kms_key, aws.region)
    prefix = ctx.name_prefix
    tags = names.tags_for(prefix)
    when = names.stamp()
    account = aws.identity()["account"]
    bucket = bucket or default_bucket(prefix, account, aws.region)
    key = key or f"{prefix}/models/{onnx.stem}-{when}/model.tar.gz"
    digest = model_sha256(onnx)
    created = model_bucket.ensure(s3, bucket, account, aws.region, tags, kms_key)
    if created:
        ctx.log(
            f"created S3 bucket {bucket} (owner-enforced, public access blocked, TLS only, "
            f"encrypted, tagged {config.TAG_KEY})"
        )
    with tempfile.TemporaryDirectory() as tmp:
        archive = build_archive(onnx, Path(tmp) / "model.tar.gz")
        size = archive.stat().st_size
        ctx.log(f"uploading {onnx.name} as s3://{bucket}/{key} ({size / 1e6:.1f} MB)")
        with buckets.pinned(bucket, account):
            extra = {
                **upload_args(onnx, digest, tags),
                **buckets.owner(account),
                **encryption.sse_kms(kms_key),
            }
            s3.upload_file(str(archive), bucket, key, ExtraArgs=extra)
    uri = f"s3://{bucket}/{key}"
    ctx.state["model_data"] = {
        "uri": uri,
        "bucket": bucket,
        "key": key,
        "source": str(onnx),
        "sha256": digest,
        "onnx_bytes": model_bytes(onnx),
        "bucket_created": created,
        "uploaded_at": now_iso(),
    }
    if kms_key:
        ctx.state["model_data"]["kms_key"] = kms_key
    ctx.save()
    return PackageResult(uri, bucket, key, size, digest, created)
