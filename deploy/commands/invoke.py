"""`invoke`: an image to the endpoint (or a local --url), detections printed; --async via S3."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deploy import async_inference, invoke, output, video
from deploy.commands import options
from deploy.context import Context
from deploy.errors import EXIT_OK, UserError

NAME = "invoke"
HELP = "send an image to the endpoint (or --url) and print detections"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "image",
        type=Path,
        nargs="+",
        help="image file (JPEG/PNG), sent as raw bytes; with --async also a video clip "
        "(MP4, MOV, AVI, MKV, WebM)",
    )
    parser.add_argument("--url", help="post to this server instead, e.g. http://127.0.0.1:8080")
    parser.add_argument("--endpoint", help="endpoint name (default: the state's)")
    parser.add_argument(
        "--model", metavar="NAME", help="a multi-model endpoint's model (models add NAME)"
    )
    options.thresholds(parser, threads=False)
    parser.add_argument("--json", action="store_true", help="print the server's JSON")
    parser.add_argument(
        "--save",
        type=Path,
        metavar="OUT.jpg",
        help="also save the annotated image; for a clip OUT.mp4 (annotated) or OUT.json",
    )
    parser.add_argument(
        "--async", dest="use_async", action="store_true", help="through S3 (up --async)"
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="--async: print where answers will be"
    )
    parser.add_argument("--timeout", type=float, help="--async: seconds to wait (default 1200)")
    parser.add_argument("--poll", type=float, help="--async: seconds between checks (default 5)")
    parser.add_argument(
        "--invocation-timeout",
        type=int,
        help="--async: seconds SageMaker lets one request run (900, a clip 3600; at most 3600)",
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    if args.use_async:
        return _invoke_async(ctx, args)
    if len(args.image) > 1:
        raise UserError("real-time invoke takes one image", "pass several with --async")
    if args.no_wait or args.timeout is not None or args.poll is not None:
        raise UserError("--no-wait, --timeout and --poll are for --async")
    if video.is_video(args.image[0]) and (not args.url or args.save):
        raise UserError(
            f"{args.image[0].name} is a video clip: send it with --async",
            "a real-time request is capped at 6 MiB and 60 s (`up --async` makes an endpoint "
            "for clips); --url posts a clip to a local server, without --save",
        )
    data, reply, picture = invoke.invoke(
        ctx,
        args.image[0],
        url=args.url,
        endpoint=args.endpoint,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        save=args.save,
        model=args.model,
    )
    if args.json:
        print(json.dumps(data, indent=2))
    elif "frames" in data:  # a clip posted to --url
        print(video.summary(data, reply.seconds, reply.target))
    else:
        print(output.detections(data, reply.seconds, reply.target))
    if picture is not None:
        print(f"saved {args.save} ({len(picture.body)} bytes)", file=sys.stderr)
    return EXIT_OK


def _invoke_async(ctx: Context, args: argparse.Namespace) -> int:
    if args.model:
        raise UserError("--model is for multi-model endpoints, which are real-time", "drop --async")
    if args.url:
        raise UserError("--url posts directly: drop --async (or --url)")
    if args.save and len(args.image) > 1:
        raise UserError("--save takes one image", "invoke the others without --save")
    requests = async_inference.send(
        ctx,
        args.image,
        endpoint=args.endpoint,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        save=args.save is not None,
        invocation_timeout=args.invocation_timeout,
        save_answer=not _saves_json(args.save),
    )
    if args.no_wait:
        for request in requests:
            print(f"{request.image}  {request.accept}  {request.output}  {request.failure or ''}")
        return EXIT_OK
    async_inference.wait(ctx, requests, timeout=args.timeout, poll=args.poll)
    name = (ctx.state.get("endpoint") or {}).get("name")
    for request in requests:
        if request.failed:
            continue
        if request.accept != "application/json":
            args.save.parent.mkdir(parents=True, exist_ok=True)
            args.save.write_bytes(request.body or b"")
            print(f"saved {args.save} ({len(request.body or b'')} bytes)", file=sys.stderr)
            continue
        data = async_inference.detections(request)
        target = f"endpoint {name} (async, {request.output})"
        if args.json:
            print(json.dumps(data, indent=2))
        elif "frames" in data:  # a clip: the per-frame summary
            print(video.summary(data, request.seconds or 0.0, target))
        else:
            print(output.detections(data, request.seconds or 0.0, target))
        if _saves_json(args.save):
            args.save.parent.mkdir(parents=True, exist_ok=True)
            args.save.write_text(json.dumps(data) + "\n")
            print(f"saved {args.save}", file=sys.stderr)
    async_inference.raise_failures(ctx, requests)
    return EXIT_OK


def _saves_json(path: Path | None) -> bool:
    return path is not None and path.suffix.lower() == ".json"
