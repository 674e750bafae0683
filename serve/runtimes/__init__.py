"""The seam between the detector and the library that runs the graph.

One module per runtime (`onnxruntime.py`, `openvino.py`), each with `load(path, threads,
precision, requests) -> Loaded`. Both read the same ONNX file and the same ONNX metadata; the
detector's pre- and post-processing do not know which one runs. This package imports neither
library: `python -m serve` checks the choice before it listens, and imports the runtime after.
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
    compiling: str | None  # INT8 while an INT8 export is served from its float view

    def run(self, tensor: np.ndarray, output: str) -> np.ndarray:
        """The named output for one input tensor; safe to call from `requests` threads at once."""
        ...

    def settle(self, timeout: float) -> bool:
        """At exit only: wait up to `timeout` s for the inferences in flight and the work the
        runtime does in the background (OpenVINO's second compile, which is dropped if it has not
        started); True when none is left, so that the process may exit normally."""
        ...


class Runtime(Protocol):
    def load(self, path: Path, threads: Threads, precision: str, requests: int) -> Loaded: ...


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    module: str  # the Python package it needs
    install: str  # how to get that package, for the `cannot start:` line
    bf16: bool  # whether it has a bf16 path on x86 CPUs
    fp32_why: str  # why it runs fp32 where bf16 hardware is there


RUNTIMES: dict[str, RuntimeSpec] = {
    "onnxruntime": RuntimeSpec(
        "onnxruntime",
        "onnxruntime",
        "pip install -r requirements-serve.txt",
        bf16=False,
        fp32_why="onnxruntime's CPU provider has no bf16 path on x86",
    ),
    "openvino": RuntimeSpec(
        "openvino",
        "openvino",
        "pip install -r requirements-openvino.txt (or build the image with RUNTIME=openvino)",
        bf16=True,
        fp32_why="",
    ),
}


def import_runtime(name: str) -> Runtime:
    """The runtime's module; imports the library it wraps."""
    return importlib.import_module(f"serve.runtimes.{name}")  # type: ignore[return-value]


def installed(spec: RuntimeSpec) -> bool:
    """Whether the runtime's package is importable, without importing it (that takes seconds)."""
    return importlib.util.find_spec(spec.module) is not None
