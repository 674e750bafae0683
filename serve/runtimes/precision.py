"""Which precision a runtime computes in: SERVE_PRECISION=auto|fp32|bf16 against the CPU.

bf16 halves the memory traffic and, where the CPU has bf16 instructions (AVX512_BF16 or AMX on
x86, the `bf16` feature on arm64: Graviton3 and later, not Graviton2), doubles the multiply rate;
without them it would be emulated and slower, so `auto` takes bf16 only where both the CPU and
the runtime have it. Accuracy: docs/serving.md, "Runtimes and precision".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serve.config import ConfigError
from serve.runtimes import BF16, FP32, RUNTIMES, RuntimeSpec, installed

OPENVINO = (
    "openvino"  # the one runtime that reads OpenVINO IR (`python -m export --int8-format ir`)
)

# AVX512_BF16 (Cooper Lake, Zen 4 and later) or AMX's bf16 tiles (Sapphire Rapids and later).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# arm64's /proc/cpuinfo `Features` (FEAT_BF16: Neoverse V1/V2, so Graviton3 and Graviton4).
ARM_BF16_FLAG = "bf16"


@dataclass(frozen=True)
class Choice:
    runtime: str
    precision: str  # FP32 or BF16
    why: str  # one phrase for the ready line


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The first processor's flags (x86 `flags`, Arm `Features`); empty where unreadable."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_bf16(flags: frozenset[str]) -> str | None:
    """The bf16 flag the CPU has, or None."""
    return next((flag for flag in (*BF16_FLAGS, ARM_BF16_FLAG) if flag in flags), None)


def choose(runtime: str, asked: str, flags: frozenset[str]) -> Choice:
    """The runtime and precision to serve with; ConfigError for a choice that cannot work."""
    spec: RuntimeSpec = RUNTIMES[runtime]
    if not installed(spec):
        raise ConfigError(
            f"SERVE_RUNTIME={runtime} needs the {spec.module} package, which is not installed: "
            f"{spec.install}"
        )
    hardware = cpu_bf16(flags)
    arm = hardware == ARM_BF16_FLAG
    # The runtime's bf16 path for this CPU's architecture, and why it runs fp32 without one.
    has_path, fp32_why = (spec.arm_bf16, spec.arm_fp32_why) if arm else (spec.bf16, spec.fp32_why)
    if asked == FP32:
        return Choice(runtime, FP32, "asked")
    if asked == BF16:
        if hardware is None:
            if not spec.bf16:
                on_arm = " (on arm64 it needs a CPU with bf16: Graviton3 or later)"
                raise ConfigError(
                    f"SERVE_PRECISION=bf16: {spec.fp32_why}{on_arm if spec.arm_bf16 else ''}; "
                    "use fp32 or auto"
                )
            raise ConfigError(
                "SERVE_PRECISION=bf16: this CPU has no bf16 instructions "
                f"({' or '.join((*BF16_FLAGS, ARM_BF16_FLAG))}); use fp32 or auto"
            )
        if not has_path:
            raise ConfigError(f"SERVE_PRECISION=bf16: {fp32_why}; use fp32 or auto")
        return Choice(runtime, BF16, "asked")
    if hardware is None:
        return Choice(runtime, FP32, "auto: the CPU has no bf16 instructions")
    if not has_path:
        return Choice(runtime, FP32, f"auto: {fp32_why}")
    if arm:
        return Choice(runtime, BF16, "auto: the arm64 CPU has bf16 (fast-math GEMM)")
    return Choice(runtime, BF16, f"auto: the CPU has {hardware}")


def for_ir(choice: Choice, runtime_asked: bool, asked: str, flags: frozenset[str]) -> Choice:
    """The choice for an OpenVINO IR model: OpenVINO where SERVE_RUNTIME was not set; ConfigError
    where another runtime was asked for (only OpenVINO reads IR)."""
    if choice.runtime == OPENVINO:
        return choice
    if runtime_asked:
        raise ConfigError(
            f"the model is OpenVINO IR (.xml + .bin), which SERVE_RUNTIME={choice.runtime} cannot "
            f"read: use SERVE_RUNTIME={OPENVINO}, or serve an ONNX export"
        )
    try:
        picked = choose(OPENVINO, asked, flags)
    except ConfigError as exc:  # say why OpenVINO, which nobody named, is needed
        raise ConfigError(
            f"the model is OpenVINO IR (.xml + .bin), read by OpenVINO only: {exc}"
        ) from None
    return Choice(picked.runtime, picked.precision, f"{picked.why}; OpenVINO IR model")
