"""The bench's fixed inputs: the floor's FLOP count and the CPU it names."""

import re
from pathlib import Path

import pytest

from keras_bp import bench


def test_matmul_flops_counts_the_five_products_of_a_step():
    # forward x·W1, h·W2; backward dW2 = hᵀ·dz, dh = dz·W2ᵀ, dW1 = xᵀ·dh; 2 FLOPs per multiply-add
    expected = 2 * (
        128 * 784 * 512 + 128 * 512 * 10 + 512 * 128 * 10 + 128 * 10 * 512 + 784 * 128 * 512
    )
    assert bench.matmul_flops() == expected


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads Linux's /proc/cpuinfo")
def test_the_cpu_is_named_with_its_vector_extensions():
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE).group(1).strip()
    flags = set(re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.MULTILINE).group(1).split())
    described = bench.cpu_description()
    assert described.startswith(model + ", ")
    if "avx512f" in flags:
        assert "AVX-512 (F" in described
    else:
        assert ("AVX2" in described) == ("avx2" in flags)
