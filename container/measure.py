"""`python -m container.measure`: what the serving image adds over its base, and its cold start.

Size: the image's size less its base image's, as the engine reports them (layers we add, so the
figure does not depend on which base the machine has). Cold start: from invoking `run IMAGE serve`
to the first 200 from /ping, the median of several starts. `--torch` also measures, the same way
and once, what `pip install torch==2.13.0` (the CPU wheel) adds in a venv over the same base: the
README's comparison with the usual PyTorch-based recipe.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from container.engine import REPO, Engine, base_image, export_onnx, find_engine, running
from demo.local_server import free_port

TORCH_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# The wheel comes from the build context through a bind mount: it is no layer of the image.
RUN --mount=type=bind,target=/wheels python3 -m venv /opt/venv \\
    && /opt/venv/bin/pip install --no-cache-dir --find-links /wheels torch==2.13.0
"""


@dataclass(frozen=True)
class Figures:
    added_bytes: int
    cold_starts: list[float]


def measure_image(engine: Engine, image: str, base: str, runs: int) -> Figures:
    starts = []
    for _ in range(runs):
        port = free_port()
        with running(engine, image, port, env={"SAGEMAKER_BIND_TO_PORT": str(port)}) as container:
            starts.append(container.ready_after)
            code, _ = container.stop_with_sigterm()
            if code != 0:
                raise RuntimeError(f"the container exited {code}:\n{container.logs()}")
    return Figures(engine.image_size(image) - engine.image_size(base), starts)


def measure_torch(engine: Engine, base: str, wheels: Path) -> int:
    """Bytes that a venv with torch (from `wheels`, its dependencies from the index) adds."""
    tag = "localhost/yolov7-measure-torch:tmp"
    with tempfile.TemporaryDirectory() as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(TORCH_DOCKERFILE)
        layers = ("--layers=false",) if engine.name == "podman" else ()
        engine(
            "build", *layers, "--network", "host", *engine.limits, "--file", str(dockerfile),
            "--build-arg", f"BASE_IMAGE={base}", "--tag", tag, str(wheels),
            timeout=1800,
        )  # fmt: skip
    try:
        return engine.image_size(tag) - engine.image_size(base)
    finally:
        engine.remove_image(tag)


def megabytes(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m container.measure", description=__doc__)
    parser.add_argument("--image", help="measure this image instead of building one")
    parser.add_argument("--runs", type=int, default=5, help="cold starts to time (default 5)")
    parser.add_argument("--torch", action="store_true", help="also measure a torch CPU install")
    parser.add_argument(
        "--wheels", type=Path, default=Path("/opt/wheels"), help="folder with the torch CPU wheel"
    )
    parser.add_argument("--keep", action="store_true", help="keep the image built here")
    args = parser.parse_args(argv)

    engine = find_engine()
    if engine is None:
        parser.error("no container engine: install podman (or run a docker daemon)")
    base = base_image(engine)
    image = args.image or "localhost/yolov7-sagemaker:measure"
    if not args.image:
        model = REPO / "weights" / "model.onnx"
        if not model.is_file():  # the documented default model
            export_onnx(model)
        engine.build(image, base)
    try:
        figures = measure_image(engine, image, base, args.runs)
    finally:
        if not args.image and not args.keep:
            engine.remove_image(image)

    starts = figures.cold_starts
    rows = [
        (f"layers the image adds over its base ({engine.name}, base {base})",
         megabytes(figures.added_bytes)),
        (f"cold start, `run IMAGE serve` to first 200 from /ping (median of {len(starts)})",
         f"{statistics.median(starts):.2f} s (max {max(starts):.2f} s)"),
    ]  # fmt: skip
    if args.torch:
        rows.insert(1, ("`pip install torch==2.13.0` (CPU wheel) in a venv over the same base",
                        megabytes(measure_torch(engine, base, args.wheels))))  # fmt: skip
    print("| measured | value |\n|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
