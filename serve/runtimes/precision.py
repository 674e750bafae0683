"""Which precision a runtime computes in: SERVE_PRECISION=auto|fp32|bf16 against the CPU.

bf16 halves the memory traffic and, where the CPU has bf16 instructions (AVX512_BF16 or AMX),
doubles the multiply rate; without them it would be emulated and slower, so `auto` takes bf16 only
where both the CPU and the runtime have it. Accuracy: docs/serving.md, "Runtimes and precision".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serve.config import ConfigError
from serve.runtimes import BF16, FP32, RUNTIMES, RuntimeSpec, installed

# AVX512_BF16 (Cooper Lake, Zen 4 and later) or AMX's bf16 tiles (Sapphire Rapids and later).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


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
    return next((flag for flag in BF16_FLAGS if flag in flags), None)


def choose(runtime: str, asked: str, flags: frozenset[str]) -> Choice:
    """The runtime and precision to serve with; ConfigError for a choice that cannot work."""
    spec: RuntimeSpec = RUNTIMES[runtime]
    if not installed(spec):
        raise ConfigError(
            f"SERVE_RUNTIME={runtime} needs the {spec.module} package, which is not installed: "
            f"{spec.install}"
        )
    hardware = cpu_bf16(flags)
    if asked == FP32:
        return Choice(runtime, FP32, "asked")
    if asked == BF16:
        if not spec.bf16:
            raise ConfigError(f"SERVE_PRECISION=bf16: {spec.fp32_why}; use fp32 or auto")
        if hardware is None:
            raise ConfigError(
                "SERVE_PRECISION=bf16: this CPU has no bf16 instructions "
                f"({' or '.join(BF16_FLAGS)}); use fp32 or auto"
            )
        return Choice(runtime, BF16, "asked")
    if hardware is None:
        return Choice(runtime, FP32, "auto: the CPU has no bf16 instructions")
    if not spec.bf16:
        return Choice(runtime, FP32, f"auto: {spec.fp32_why}")
    return Choice(runtime, BF16, f"auto: the CPU has {hardware}")
