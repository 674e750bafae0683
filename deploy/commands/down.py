"""`down`: delete what this tool created, tag-checked and idempotent (deploy/teardown)."""

from __future__ import annotations

import argparse

from deploy import config, names, teardown
from deploy.commands import options
from deploy.context import Context
from deploy.errors import EXIT_OK, UserError
from deploy.teardown import DownReport

NAME = "down"
HELP = "delete what this tool created (tag-checked, idempotent)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="tear down this endpoint (tagged by us) without state")
    parser.add_argument("--delete-model-data", action="store_true", help="also the S3 model.tar.gz")
    parser.add_argument("--delete-repository", action="store_true", help="also the ECR repository")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    options.wait_options(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    if args.endpoint:
        names.check_name(args.endpoint, "--endpoint")
    report = teardown.down(
        ctx,
        endpoint_name=args.endpoint,
        delete_model_data=args.delete_model_data,
        delete_repository=args.delete_repository,
        dry_run=args.dry_run,
        wait=not args.no_wait,
        poll=options.poll(args),
        timeout=args.timeout,
    )
    print(render(report, args.dry_run))
    if report.refused:
        raise UserError(
            f"refused to delete {len(report.refused)} resource(s) that this tool did not create "
            f"(no tag {config.TAG_KEY}={config.TAG_VALUE})",
            "delete them yourself if they really are to go",
        )
    return EXIT_OK


def render(report: DownReport, dry_run: bool) -> str:
    if dry_run:
        if not report.planned:
            return "nothing to delete"
        return "\n".join(["would delete (if tagged by this tool):", *report.planned])
    lines = ["nothing to delete"] if report.nothing and not report.absent else []
    lines += [f"deleted  {item}" for item in report.deleted]
    lines += [f"gone     {item} (already)" for item in report.absent]
    lines += [f"REFUSED  {item} (not tagged {config.TAG_KEY})" for item in report.refused]
    lines += [f"kept     {item}" for item in report.kept]
    if report.state_removed:
        lines.append("state file removed: nothing of this deployment is left")
    return "\n".join(lines)
