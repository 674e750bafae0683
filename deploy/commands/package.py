"""`package`: an .onnx (or an OpenVINO IR's .xml and .bin) packed as model.tar.gz and uploaded
to S3."""

from __future__ import annotations

import argparse
from pathlib import Path

from deploy import artifacts
from deploy.context import Context
from deploy.errors import EXIT_OK

NAME = "package"
HELP = "pack an .onnx (or OpenVINO IR .xml + .bin) as model.tar.gz and upload it to S3"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        type=Path,
        help="the .onnx (or IR .xml, its .bin beside it) written by `python -m export`",
    )
    parser.add_argument("--bucket", help="S3 bucket (default PREFIX-sagemaker-ACCOUNT-REGION)")
    parser.add_argument("--key", help="object key (default PREFIX/models/NAME-TIMESTAMP/...)")
    parser.add_argument(
        "--kms-key", metavar="ARN|alias/NAME", help="encrypt the upload with this key (SSE-KMS)"
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    result = artifacts.package(
        ctx, args.model, bucket=args.bucket, key=args.key, kms_key=args.kms_key
    )
    print(result.uri)
    return EXIT_OK
