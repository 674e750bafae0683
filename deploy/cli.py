"""`python -m deploy COMMAND`: parse arguments, run the command's module, map errors to exit codes.

Each command lives in deploy/commands/NAME.py (its arguments, its run, its output); this module
only registers them. Results go to stdout (an image URI, a table, JSON); progress and errors go to
stderr. Any failure is one line `error: what happened. what to do.` and exit code 1 (AWS) or 2
(input).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Protocol

from deploy import __version__, config, names
from deploy.aws import Aws
from deploy.aws.session import check_duration
from deploy.commands import (
    autoscale,
    capture,
    cost,
    down,
    iam,
    invoke,
    logs,
    models,
    package,
    push,
    status,
    template,
    transform,
    up,
    update,
)
from deploy.context import Context
from deploy.errors import EXIT_AWS, EXIT_INTERRUPTED, EXIT_USER, explain
from deploy.state import StateFile


class Command(Protocol):
    """What a module of deploy/commands provides."""

    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, ctx: Context, args: argparse.Namespace) -> int: ...


# In the order `--help` lists them: a new command is one module and one line here.
COMMANDS: tuple[Command, ...] = (
    push,
    package,
    models,
    up,
    update,
    invoke,
    autoscale,
    transform,
    cost,
    status,
    logs,
    capture,
    template,
    down,
    iam,
)

DESCRIPTION = """\
A YOLOv7 detector on Amazon SageMaker, from image to endpoint and back to nothing:
  push -> package (or models add) -> up -> invoke / autoscale / transform / cost / status
  -> update -> down
Every resource is named PREFIX-...-TIMESTAMP, tagged managed-by=yolov7-sagemaker-deploy and
recorded in the state file, so later commands need no names.
Exit codes: 0 ok, 1 AWS failure, 2 bad input, 130 interrupted.
"""


def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    """Options accepted before or after the command (`--region X up` or `up --region X`)."""
    default = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("AWS and state")
    group.add_argument("--region", default=default, help="AWS region (else profile/env)")
    group.add_argument("--profile", default=default, help="profile from ~/.aws/config")
    group.add_argument(
        "--assume-role", metavar="ARN", default=default, help="assume this IAM role first"
    )
    group.add_argument("--external-id", default=default, help="ExternalId for --assume-role")
    group.add_argument(
        "--duration",
        metavar="SECONDS",
        default=default,
        help="--assume-role credentials' lifetime, 900..43200 (3600); renewed during long waits",
    )
    group.add_argument(
        "--state",
        type=Path,
        default=config.DEFAULT_STATE if top else argparse.SUPPRESS,
        help=f"state file (default {config.DEFAULT_STATE})",
    )
    group.add_argument(
        "--prefix",
        default=default,
        help=f"name prefix for new resources (default: the state's, else {config.DEFAULT_PREFIX})",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show tracebacks",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        _common(sub, top=False)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None, aws: Aws | None = None) -> int:
    """Run one command; `aws` hands in a ready session (tests: Stubber-backed clients)."""
    args = build_parser().parse_args(argv)
    try:
        duration = check_duration(args.duration, args.assume_role)
        store = StateFile(args.state)
        ctx = Context(
            store=store,
            state=store.read(),
            region=args.region,
            profile=args.profile,
            assume_role=args.assume_role,
            external_id=args.external_id,
            duration=duration,
            prefix=args.prefix,
        )
        if args.prefix:
            names.check_prefix(args.prefix)
        if aws is not None:
            ctx.use_aws(aws)
        code: int = args.run(ctx, args)
        return code
    except BrokenPipeError:
        # `python -m deploy status --json | head`: the reader left; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_AWS
    except KeyboardInterrupt as interrupted:
        # A command that cleaned up after Ctrl-C says what is left and how to finish.
        said = str(interrupted) or "run `python -m deploy status` to see what exists"
        print(f"\ninterrupted: {said}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        error = explain(exc)
        if args.debug:
            traceback.print_exc()
        if error is None:
            print(
                f"error: unexpected {type(exc).__name__}: {exc}. Rerun with --debug for the "
                "traceback and report it.",
                file=sys.stderr,
            )
            return EXIT_AWS
        print(f"error: {error.line()}", file=sys.stderr)
        return error.exit_code if error.exit_code in (EXIT_AWS, EXIT_USER) else EXIT_AWS
