"""`make image` (`python -m container.image`): the serving image from a clean clone, one command.

The Dockerfile bakes in `weights/model.onnx`, which a clone does not have (.gitignore keeps it out).
This exports it first when it is missing or stale (older than the checkpoint, or made from another
checkpoint or at another size: the ONNX metadata says which), then builds with the command line
`deploy push` runs: docker when its engine answers, else podman, and a single-platform Docker v2
manifest, the only kind SageMaker accepts.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from deploy import config as deploy_config
from deploy.artifacts import sha256
from deploy.errors import DeployError
from deploy.images import build_command, pick_cli
from serve.runtimes import DEFAULT_RUNTIME, RUNTIMES, SERVE_REQUIREMENTS  # imports no runtime

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "weights" / "shapes-yolov7-tiny.pt"
DEFAULT_MODEL = REPO / "weights" / "model.onnx"
DEFAULT_TAG = "yolov7-sagemaker:latest"


class ImageError(RuntimeError):
    """A step failed; the message is the one line to print."""


@dataclass(frozen=True)
class Wanted:
    weights: Path
    img_size: int


def default_img_size(weights: Path) -> int:
    """320 for the bundled model (what it was trained at), else export's own default, 640."""
    return 320 if weights.resolve() == BUNDLED.resolve() else 640


def read_metadata(model: Path) -> dict[str, str]:
    import onnx  # export's dependency: only here, so `--help` answers without it

    proto = onnx.load(str(model), load_external_data=False)
    return {entry.key: entry.value for entry in proto.metadata_props}


def why_stale(model: Path, wanted: Wanted) -> str | None:
    """Why the model must be exported again, or None when it is what `wanted` asks for."""
    if not model.exists():
        return f"{_shown(model)} does not exist"
    if model.stat().st_mtime < wanted.weights.stat().st_mtime:
        return f"{_shown(model)} is older than {_shown(wanted.weights)}"
    try:
        metadata = read_metadata(model)
    except Exception as exc:  # onnx raises several types for a file that is not a model
        return f"{_shown(model)} cannot be read ({type(exc).__name__})"
    if metadata.get("checkpoint_sha256") != sha256(wanted.weights):
        return f"{_shown(model)} was exported from another checkpoint"
    strides = [int(s) for s in metadata.get("strides", "[32]").strip("[]").split(",") if s]
    step = max(strides or [32])
    if metadata.get("img_size") != str(math.ceil(wanted.img_size / step) * step):
        return f"{_shown(model)} is {metadata.get('img_size')} px, not {wanted.img_size}"
    return None


def export(model: Path, wanted: Wanted) -> None:
    command = [
        sys.executable, "-m", "export", "--weights", str(wanted.weights),
        "--img-size", str(wanted.img_size), "--output", str(model),
    ]  # fmt: skip
    if subprocess.run(command, cwd=REPO, check=False).returncode != 0:
        raise ImageError(f"exporting {_shown(wanted.weights)} failed (see above)")


def runtime_build_args(runtime: str) -> list[str]:
    """What the Dockerfile and container/install_venv.sh install for `runtime`, from its registry
    entry (serve/runtimes): its requirement file, the packages of requirements-serve.txt that it
    replaces (the default runtime's), and the paths its image prunes. The Dockerfile's defaults
    are these for the default runtime (a test keeps them in step)."""
    spec = RUNTIMES[runtime]
    replaced = (
        () if spec.requirements == SERVE_REQUIREMENTS else (RUNTIMES[DEFAULT_RUNTIME].module,)
    )
    return [
        f"RUNTIME={spec.name}",
        f"RUNTIME_REQUIREMENTS={spec.requirements}",
        f"RUNTIME_REPLACES={' '.join(replaced)}",
        f"RUNTIME_PRUNE={' '.join(spec.prune)}",
    ]


def build(
    cli: str, tag: str, model: Path, base_image: str | None, platform: str | None, runtime: str
) -> None:
    try:
        in_context = model.resolve().relative_to(REPO)
    except ValueError:
        raise ImageError(f"{model} is outside the build context {REPO}") from None
    build_args = [f"MODEL_FILE={in_context.as_posix()}", *runtime_build_args(runtime)]
    if base_image:
        build_args.append(f"BASE_IMAGE={base_image}")
    argv = build_command(cli, tag, REPO, platform=platform, build_args=build_args)
    print(f"$ {' '.join(argv)}", flush=True)
    if subprocess.run(argv, cwd=REPO, check=False).returncode != 0:
        raise ImageError(f"`{cli} build` failed (see above)")


def make_image(args: argparse.Namespace) -> None:
    weights = args.weights
    if not weights.is_file():
        raise ImageError(f"no checkpoint at {weights}")
    if args.img_size is not None and not 0 < args.img_size <= 4096:
        raise ImageError(f"--img-size must be between 1 and 4096, got {args.img_size}")
    wanted = Wanted(weights, args.img_size or default_img_size(weights))
    reason = why_stale(args.model, wanted)
    if reason:
        print(f"==> exporting {_shown(weights)} at {wanted.img_size} px: {reason}", flush=True)
        export(args.model, wanted)
    else:
        print(f"==> {_shown(args.model)} is up to date with {_shown(weights)}", flush=True)
    try:
        cli = pick_cli(args.cli)
    except DeployError as exc:
        raise ImageError(exc.line()) from None
    build(cli, args.tag, args.model, args.base_image, args.platform, args.runtime)
    print(f"==> built {args.tag} with {cli}; run it: {cli} run --rm -p 8080:8080 {args.tag}")


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m container.image", description=__doc__.split("\n")[0]
    )
    p.add_argument("--weights", type=Path, default=BUNDLED, help="checkpoint (default: bundled)")
    p.add_argument("--img-size", type=int, help="export size (default 320 bundled, else 640)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="ONNX file to bake in")
    p.add_argument("--tag", default=DEFAULT_TAG, help=f"image tag (default {DEFAULT_TAG})")
    p.add_argument("--base-image", help="BASE_IMAGE build argument (default python:3.11-slim)")
    p.add_argument("--cli", choices=("docker", "podman"), help="default: docker, else podman")
    p.add_argument(
        "--runtime",
        choices=tuple(RUNTIMES),
        default=DEFAULT_RUNTIME,
        help=f"what the image runs the model with (default {DEFAULT_RUNTIME})",
    )
    p.add_argument(
        "--platform", default=deploy_config.DEFAULT_PLATFORM, help="default: what push builds"
    )
    args = p.parse_args(argv)
    try:
        make_image(args)
    except ImageError as exc:
        print(f"image: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
