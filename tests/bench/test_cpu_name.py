"""bench names the CPU it ran on, x86 and arm64 alike (arm64's cpuinfo has no `model name`)."""

from __future__ import annotations

from bench.cli import cpu_name
from tests.support.cpuinfo import graviton_cpuinfo

X86 = (
    "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\n"
    "flags\t\t: fpu avx512f amx_bf16\n"
)


def test_x86_is_named_by_model_name():
    assert cpu_name(X86) == "Intel(R) Xeon(R) Platinum 8488C"


def test_graviton_is_named_by_its_part():
    assert cpu_name(graviton_cpuinfo(2)) == "Neoverse N1 (AWS Graviton2)"
    assert cpu_name(graviton_cpuinfo(3, vcpus=4)) == "Neoverse V1 (AWS Graviton3)"


def test_an_unknown_arm_part_is_named_raw_and_nothing_is_unknown():
    text = graviton_cpuinfo(2).replace("0xd0c", "0xd81")
    assert cpu_name(text) == "arm64 CPU implementer 0x41 part 0xd81"
    assert cpu_name("") == "unknown"
