"""`iam`: write the IAM documents with the account (and optionally the region) filled in."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deploy import iam_policies
from deploy.context import Context
from deploy.errors import EXIT_OK

NAME = "iam"
HELP = "write the IAM policies and trust policy for one account (ACCOUNT_ID, REGION filled in)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", required=True, help="the 12-digit AWS account id")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(".deploy") / "iam",
        help="folder to write the three documents to (default .deploy/iam)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=iam_policies.SOURCE,
        help="folder of the shipped documents (default: the repository's iam/)",
    )
    # The region comes from the common --region: it fills REGION; without it, "*" (all regions).


def run(ctx: Context, args: argparse.Namespace) -> int:
    region = args.region or iam_policies.ALL_REGIONS
    documents = iam_policies.rendered(args.account, region, args.source)  # checks before writing
    args.out.mkdir(parents=True, exist_ok=True)
    for name, document in documents.items():
        path = args.out / name
        path.write_text(json.dumps(document, indent=2) + "\n")
        print(path)
    ctx.log(f"account {args.account}, region {region}: paste these as docs/deploy.md shows")
    return EXIT_OK
