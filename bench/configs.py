"""The server configurations the benchmark sets side by side: runtime x precision x model x threads.

Each one is what a user gets from `python -m serve` with a few environment variables
(SERVE_RUNTIME, SERVE_PRECISION, ORT_INTRA_OP_THREADS, ORT_INTER_OP_THREADS) and one of the
exported models (FP32, the INT8 QDQ export, or end2end). The same description drives the server
under load and the in-process accuracy check (serve's Detector with the same arguments), so each
speed figure is reported next to the accuracy of exactly that configuration.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace

from serve.runtimes import BF16, DEFAULT_RUNTIME, FP32, INT8, RUNTIMES, RuntimeSpec, installed
from serve.runtimes.precision import cpu_bf16, cpu_flags

EXACT = "ours"  # the default configuration (onnxruntime FP32): what the others are judged against


@dataclass(frozen=True)
class ModelKind:
    """One export the configurations run: `python -m export` with these options."""

    precision: str = FP32
    int8_runtime: str = "onnxruntime"  # the runtime the INT8 export's gate judges it on
    int8_quantizer: str | None = None
    int8_format: str = "onnx"  # or "ir": NNCF on the OpenVINO model, written as OpenVINO IR
    rect: bool = False  # `--rect`: each photo's smallest rectangle instead of the square
    end2end: bool = False

    @property
    def suffix(self) -> str:
        return ".xml" if self.int8_format == "ir" else ".onnx"


_IR = ModelKind(INT8, "openvino", "nncf", "ir")
# int8: onnxruntime.quantization's export (the default); int8_ir: NNCF's OpenVINO IR
# (`--int8-runtime openvino --int8-format ir`, the published recipe's path); *_rect: `--rect`
MODELS: dict[str, ModelKind] = {
    "fp32": ModelKind(),
    "rect": ModelKind(rect=True),
    "int8": ModelKind(INT8),
    "int8_rect": ModelKind(INT8, rect=True),
    "int8_ir": _IR,
    "int8_ir_rect": replace(_IR, rect=True),
    "end2end": ModelKind(end2end=True),
}


@dataclass(frozen=True)
class Config:
    name: str
    runtime: str = DEFAULT_RUNTIME
    precision: str = FP32
    model: str = "fp32"  # which export (MODELS)
    intra_op: int | None = None  # None: the server's default (every CPU)
    inter_op: int = 1
    what: str = ""
    # for the full model only the configurations a user would pick for it are measured
    families: tuple[str, ...] = field(default=("yolov7-tiny",))

    def env(self) -> dict[str, str]:
        """The server's environment variables for this configuration: only what differs from the
        defaults, so that the exact configuration is the server exactly as it ships."""
        env: dict[str, str] = {}
        if self.runtime != DEFAULT_RUNTIME:  # auto would pick bf16 where the CPU has it
            env = {"SERVE_RUNTIME": self.runtime, "SERVE_PRECISION": self.precision}
        if self.intra_op is not None:
            env["ORT_INTRA_OP_THREADS"] = str(self.intra_op)
        if self.inter_op != 1:
            env["ORT_INTER_OP_THREADS"] = str(self.inter_op)
        return env

    def expect(self) -> dict[str, str]:
        """What /ping must answer for this configuration."""
        model_precision = INT8 if self.model.startswith("int8") else self.precision
        return {
            "runtime": self.runtime,
            "precision": model_precision,
            "float_precision": self.precision,
        }


BOTH = ("yolov7-tiny", "yolov7")


def runtime_configs(spec: RuntimeSpec) -> tuple[Config, ...]:
    """A runtime other than the default, from its registry entry (serve/runtimes): FP32, bf16
    where it has a bf16 path, the INT8 export, and those two with 1 thread per inference."""
    name, title = spec.bench, spec.title
    bf16 = (
        (Config(f"{name}_bf16", spec.name, BF16, what=f"{title} bf16", families=BOTH),)
        if spec.bf16
        else ()
    )
    bf16_intra_op_1 = (
        (
            Config(
                f"{name}_bf16_intra_op_1",
                spec.name,
                BF16,
                intra_op=1,
                what=f"{title} bf16, 1 thread per inference",
            ),
        )
        if spec.bf16
        else ()
    )
    return (
        Config(f"{name}_fp32", spec.name, what=f"{title} FP32", families=BOTH),
        *bf16,
        Config(
            f"{name}_int8",
            spec.name,
            model="int8",
            what=f"{title} on the INT8 QDQ export",
            families=BOTH,
        ),
        *(
            (
                Config(
                    f"{name}_int8_ir",
                    spec.name,
                    model="int8_ir",
                    what=f"{title} on the NNCF INT8 IR (--int8-format ir)",
                    families=BOTH,
                ),
                Config(
                    f"{name}_int8_ir_rect",
                    spec.name,
                    model="int8_ir_rect",
                    what=f"{title} on the NNCF INT8 IR, --rect",
                    families=BOTH,
                ),
            )
            if spec.name == "openvino"  # OpenVINO IR is OpenVINO's own format
            else ()
        ),
        *bf16_intra_op_1,
        Config(
            f"{name}_int8_intra_op_1",
            spec.name,
            model="int8",
            intra_op=1,
            what=f"{title} on the INT8 export, 1 thread per inference",
        ),
    )


ALL: tuple[Config, ...] = (
    Config(EXACT, what="onnxruntime FP32, the default", families=BOTH),
    Config("end2end", model="end2end", what="onnxruntime FP32, NMS in the graph"),
    Config("intra_op_1", intra_op=1, what="onnxruntime FP32, 1 thread per inference"),
    Config("inter_op_2", inter_op=2, what="onnxruntime FP32, 2 inter-op threads"),
    Config("ort_int8", model="int8", what="onnxruntime on the INT8 QDQ export", families=BOTH),
    Config(
        "ort_int8_rect",
        model="int8_rect",
        what="onnxruntime on the INT8 QDQ --rect export",
        families=BOTH,
    ),
    # every other runtime in the registry
    *(
        c
        for spec in RUNTIMES.values()
        if spec.name != DEFAULT_RUNTIME
        for c in runtime_configs(spec)
    ),
)


def why_not(config: Config, flags: frozenset[str]) -> str | None:
    """Why this machine cannot run the configuration, or None when it can."""
    spec = RUNTIMES[config.runtime]
    if not installed(spec):
        return f"{spec.module} is not installed (pip install -r {spec.requirements})"
    if MODELS[config.model].int8_quantizer and importlib.util.find_spec("nncf") is None:
        return "nncf is not installed (pip install -r requirements-export.txt)"
    if config.precision == BF16 and cpu_bf16(flags) is None:
        return "the CPU has no bf16 instructions (avx512_bf16 or amx_bf16)"
    return None


def available(family: str) -> tuple[list[Config], dict[str, str]]:
    """(configurations this machine runs for `family`, {skipped name: why})."""
    flags = cpu_flags()
    runnable, skipped = [], {}
    for config in ALL:
        if family not in config.families:
            continue
        reason = why_not(config, flags)
        if reason is None:
            runnable.append(config)
        else:
            skipped[config.name] = reason
    return runnable, skipped
