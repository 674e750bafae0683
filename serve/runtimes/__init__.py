"""The seam between the detector and the library that runs the graph.

One module per runtime (`onnxruntime.py`, `openvino.py`), each with `load(path, threads,
precision, requests) -> Loaded`. Both read the same ONNX file and the same ONNX metadata; the
detector's pre- and post-processing do not know which one runs. This package imports neither
library: `python -m serve` checks the choice before it listens, and imports the runtime after.

`RUNTIMES` below is the one place a runtime is declared. What derives from it: `SERVE_RUNTIME`'s
choices and help (serve/config.py), the `cannot start:` line (precision.py), the image
(`python -m container.image --runtime` passes the entry's requirement file and pruning to the
Dockerfile and container/install_venv.sh as build arguments), and the benchmark's configurations
(bench/configs.py). Adding a runtime: its module here (`load`), one entry below, its requirement
file.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from serve.model_info import Port

FP32, BF16 = "fp32", "bf16"
INT8 = "int8"  # a model's precision (an INT8 QDQ export's metadata), never a runtime's


@dataclass(frozen=True)
class Threads:
    intra_op: int  # threads inside one inference
    inter_op: int  # onnxruntime only: threads across operators


class Loaded(Protocol):
    """A model compiled by one runtime, ready to run from several threads."""

    inputs: Sequence[Port]
    outputs: Sequence[Port]
    metadata: Mapping[str, str]  # the ONNX file's metadata_props, as written
    precision: str  # what the runtime computes in: FP32 (the graph's own types) or BF16
    runs_int8: bool  # an INT8 export whose QDQ pairs run as int8 now
    # INT8 while an INT8 export is served from its float view; "shapes" while OpenVINO compiles a
    # --rect export for a shape it has newly seen
    compiling: str | None

    def run(
        self, tensor: np.ndarray, output: str, objectness_over: float | None = None
    ) -> np.ndarray:
        """The named output for one input tensor; safe to call from `requests` threads at once.
        `objectness_over` (a raw-layout output only): the runtime may leave out the rows whose
        objectness (column 4) is not over it, those NMS drops first, keeping the others' order."""
        ...

    def settle(self, timeout: float) -> bool:
        """At exit only: wait up to `timeout` s for the inferences in flight and the work the
        runtime does in the background (OpenVINO's second compile, which is dropped if it has not
        started); True when none is left, so that the process may exit normally."""
        ...


class Runtime(Protocol):
    def load(
        self, path: Path, threads: Threads, precision: str, requests: int, static_shapes: int = 0
    ) -> Loaded: ...


DEFAULT_RUNTIME = "onnxruntime"
# What the serving image installs for every runtime; it carries the default runtime, which another
# runtime's image leaves out (container/install_venv.sh).
SERVE_REQUIREMENTS = "requirements-serve.txt"


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    module: str  # the Python package it needs (the import name and the distribution's name)
    requirements: str  # the requirement file that installs it (beside SERVE_REQUIREMENTS)
    bf16: bool  # whether it has a bf16 path on x86 CPUs
    fp32_why: str  # why it runs fp32 where bf16 hardware is there
    arm_bf16: bool = False  # whether it has a bf16 path on arm64 CPUs with bf16 (Graviton3+)
    arm_fp32_why: str = ""  # why it runs fp32 on an arm64 CPU that has bf16
    # In its image: paths under site-packages that serving never loads, removed after the install
    # (shell patterns). A runtime other than the default is installed with --no-deps from its
    # requirement file, which must therefore pin all it needs that SERVE_REQUIREMENTS lacks.
    prune: tuple[str, ...] = ()
    title: str = ""  # its name in prose (the benchmark's descriptions)
    bench: str = ""  # the benchmark's prefix for its configurations (bench/configs.py)

    @property
    def install(self) -> str:
        """How to get its package, for the `cannot start:` line."""
        command = f"pip install -r {self.requirements}"
        if self.requirements == SERVE_REQUIREMENTS:
            return command
        return f"{command} (or build the image with RUNTIME={self.name})"


RUNTIMES: dict[str, RuntimeSpec] = {
    "onnxruntime": RuntimeSpec(
        "onnxruntime",
        "onnxruntime",
        SERVE_REQUIREMENTS,
        bf16=False,
        fp32_why="onnxruntime's CPU provider has no bf16 path on x86",
        # MLAS's bf16 fast-math GEMM (session config mlas.enable_gemm_fastmath_arm64_bfloat16)
        arm_bf16=True,
        # its offline tools
        prune=("onnxruntime/tools", "onnxruntime/quantization", "onnxruntime/transformers"),
        title="onnxruntime",
        bench="ort",
    ),
    "openvino": RuntimeSpec(
        "openvino",
        "openvino",
        "requirements-openvino.txt",
        bf16=True,
        fp32_why="",
        arm_fp32_why="its bf16 hint is not enabled on arm64 here (not measured on Graviton)",
        # Only the CPU plugin and the ONNX (and IR) frontends run here: no GPU/NPU/AUTO/HETERO
        # plugins, no GPU kernel cache, no TensorFlow/PyTorch/Paddle/JAX/GGUF frontends, no C
        # API, headers or tools (180 -> 98 MB, measured).
        prune=(
            "openvino/libs/libopenvino_intel_gpu_plugin.so",
            "openvino/libs/libopenvino_intel_npu_plugin.so",
            "openvino/libs/cache.json",
            "openvino/libs/libopenvino_auto_plugin.so",
            "openvino/libs/libopenvino_hetero_plugin.so",
            "openvino/libs/libopenvino_auto_batch_plugin.so",
            "openvino/libs/libopenvino_c.so*",
            "openvino/libs/tbb.pc",
            "openvino/include",
            "openvino/tools",
            "openvino/frontend/jax",
            "openvino/frontend/paddle",
            "openvino/frontend/pytorch",
            "openvino/frontend/tensorflow",
            "openvino/libs/libopenvino_tensorflow_frontend.so*",
            "openvino/libs/libopenvino_pytorch_frontend.so*",
            "openvino/libs/libopenvino_paddle_frontend.so*",
            "openvino/libs/libopenvino_gguf_frontend.so*",
            "openvino/libs/libopenvino_tensorflow_lite_frontend.so*",
            "openvino/libs/libopenvino_jax_frontend.so*",
        ),
        title="OpenVINO",
        bench="ov",
    ),
}


def import_runtime(name: str) -> Runtime:
    """The runtime's module; imports the library it wraps."""
    return importlib.import_module(f"serve.runtimes.{name}")


def installed(spec: RuntimeSpec) -> bool:
    """Whether the runtime's package is importable, without importing it (that takes seconds)."""
    return importlib.util.find_spec(spec.module) is not None
