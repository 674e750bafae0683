"""`models add|list|remove`: the models of a multi-model endpoint, NAME.tar.gz under its prefix."""

from __future__ import annotations

import argparse
from pathlib import Path

from deploy import multi_models
from deploy.context import Context
from deploy.errors import EXIT_OK

NAME = "models"
HELP = "add, list or remove the models a multi-model endpoint serves (up --multi-model)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="pack a model as NAME.tar.gz under the prefix")
    add.add_argument("name", help="the model's name: invoke --model NAME")
    given = add.add_mutually_exclusive_group(required=True)
    given.add_argument("--onnx", type=Path, help="an .onnx written by `python -m export`")
    given.add_argument("--weights", type=Path, help="a YOLOv7 checkpoint, exported first")
    add.add_argument("--img-size", type=int, help="with --weights: the export's input size")
    add.add_argument(
        "--kms-key", metavar="ARN|alias/NAME", help="encrypt the upload with this key (SSE-KMS)"
    )
    listed = actions.add_parser("list", help="the models under the prefix")
    removed = actions.add_parser("remove", help="delete NAME.tar.gz from the prefix")
    removed.add_argument("name")
    for sub in (add, listed, removed):
        sub.add_argument(
            "--models", metavar="S3_PREFIX", help="s3://BUCKET/PREFIX/ (default: the recorded)"
        )


def run(ctx: Context, args: argparse.Namespace) -> int:
    if args.action == "add":
        uri = multi_models.add(
            ctx, args.name, args.onnx, args.weights, args.img_size, args.models, args.kms_key
        )
        print(uri)
    elif args.action == "list":
        uri, stored = multi_models.listing(ctx, args.models)
        ctx.log(f"models under {uri}")
        print(multi_models.summary(stored))
    else:
        print(f"removed {multi_models.remove(ctx, args.name, args.models)}")
    return EXIT_OK
