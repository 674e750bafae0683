"""A rough compute bound: the fastest one inference could run if the CPU's multiply-accumulate
units did nothing else, for the efficiency column (derived, never measured).

bound (ms) = the model's operations (2 x the fused convolutions' multiply-accumulates, the GFLOPs
of bench/models.size_of) / the CPU's peak operations per second at that precision, where

  peak = cores x ops per cycle per core x clock
  ops per cycle per core = 2 (a multiply-accumulate is 2 ops) x pipes x lanes per instruction

- lanes: the SIMD datapath's width over the element size: 8-bit int8 with VNNI (vpdpbusd: 4 u8 x s8
  products into each 32-bit lane), 16-bit bf16 with AVX512_BF16 (vdpbf16ps), 32-bit fp32 (FMA).
  int8 without VNNI (AVX2's vpmaddubsw + vpmaddwd) counts at half the VNNI rate.
- datapath and pipes: AMD Zen 2-4 (cpu family 23, 25) execute AVX-512 on 256-bit units, two of
  them; Zen 5 (family 26) and Intel's AVX-512 server cores on 512 bits, two pipes; AVX2 only: 256.
- cores: the CPUs this process may use (a vCPU is counted as a core: on an SMT host two vCPUs
  sharing one core would halve the bound's peak).
- clock: `cpu MHz` from /proc/cpuinfo (a VM reports its nominal clock; a CPU that boosts higher
  runs faster than this bound assumes), or --cpu-ghz.

Efficiency = bound / measured time per image: at c=1 the p50 (one inference on every core), at
c=4 1 / throughput (every core kept busy). It leaves out what the server does besides the
network (decode, letterbox, NMS, HTTP): that is part of what efficiency measures here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ELEMENT_BITS = {"int8": 8, "bf16": 16, "fp32": 32}


@dataclass(frozen=True)
class Peak:
    cores: int
    ghz: float
    width_bits: int
    pipes: int
    ops_per_cycle: dict[str, float]  # per core, by precision

    def gops(self, precision: str) -> float:
        return self.cores * self.ops_per_cycle[precision] * self.ghz

    def bound_ms(self, gflops: float, precision: str) -> float:
        return 1000 * gflops / self.gops(precision)

    def how(self, precision: str) -> str:
        return (
            f"{self.cores} cores x {self.ops_per_cycle[precision]:g} {precision} ops/cycle "
            f"({self.pipes} x {self.width_bits}-bit) x {self.ghz:.2f} GHz = "
            f"{self.gops(precision):.0f} G ops/s"
        )


def _field(cpuinfo: str, key: str) -> str:
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return ""


def peak(cores: int, cpuinfo: str | None = None, ghz: float | None = None) -> Peak:
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set(_field(cpuinfo, "flags").split())
    vendor, family = _field(cpuinfo, "vendor_id"), _field(cpuinfo, "cpu family")
    if "avx512f" in flags:
        width = 256 if vendor == "AuthenticAMD" and family in ("23", "25") else 512
    else:
        width = 256
    pipes = 2
    if ghz is None:
        mhz = _field(cpuinfo, "cpu MHz")
        ghz = float(mhz) / 1000 if mhz else 2.0
    per_cycle = {p: 2 * pipes * width / bits for p, bits in ELEMENT_BITS.items()}
    if not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        per_cycle["int8"] /= 2
    if not flags & {"avx512_bf16", "amx_bf16"}:
        per_cycle["bf16"] = per_cycle["fp32"]  # bf16 would run as fp32
    return Peak(cores, ghz, width, pipes, per_cycle)
