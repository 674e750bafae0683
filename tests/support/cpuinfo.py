"""/proc/cpuinfo texts of real Graviton CPUs (first processor; the kernel repeats the block per
vCPU), as published from ml.c6g (Graviton2, Neoverse N1) and ml.c7g (Graviton3, Neoverse V1):
the unit tests read them, and the arm64 container test bind-mounts one over /proc/cpuinfo, since
qemu-user shows the host's x86 one (docs/container.md, "arm64")."""

from __future__ import annotations

from pathlib import Path

_BLOCK = """processor\t: {n}
BogoMIPS\t: {bogomips}
Features\t: {features}
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: {variant}
CPU part\t: {part}
CPU revision\t: 1
"""
GRAVITON2_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
    "asimddp ssbs"
)
GRAVITON3_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma "
    "lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg "
    "dcpodp svei8mm svebf16 i8mm bf16 dgh rng"
)


def graviton_cpuinfo(generation: int, vcpus: int = 2) -> str:
    """The whole file for Graviton2 or Graviton3 with `vcpus` processors."""
    fields = {
        2: {"bogomips": "243.75", "features": GRAVITON2_FEATURES, "variant": "0x3"},
        3: {"bogomips": "2100.00", "features": GRAVITON3_FEATURES, "variant": "0x1"},
    }[generation]
    part = {2: "0xd0c", 3: "0xd40"}[generation]
    return "\n".join(_BLOCK.format(n=n, part=part, **fields) for n in range(vcpus))


def write_graviton_cpuinfo(directory: Path, generation: int) -> Path:
    path = directory / f"cpuinfo-graviton{generation}"
    path.write_text(graviton_cpuinfo(generation))
    path.chmod(0o644)
    return path
