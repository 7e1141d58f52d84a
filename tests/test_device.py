"""Precision, memory format and host-memory choices of the training jobs."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from soundsup.device import autocast, autocast_dtype, memory_format, native_bf16

CPU = torch.device("cpu")


def test_precision_choices():
    assert autocast_dtype(CPU, "fp32") is None
    assert autocast_dtype(CPU, "bf16") is torch.bfloat16
    assert autocast_dtype(CPU, "auto") is (torch.bfloat16 if native_bf16(CPU) else None)
    assert autocast_dtype(torch.device("meta"), "auto") is None  # no native bf16 known there
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype(CPU, "fp16")


def test_autocast_runs_layers_in_the_chosen_dtype():
    layer = nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with autocast(CPU, torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
    with autocast(CPU, None):
        assert layer(x).dtype == torch.float32
    assert layer.weight.dtype == torch.float32  # weights stay fp32 under autocast


def test_memory_format_follows_device_and_precision():
    assert memory_format(CPU) == torch.contiguous_format
    assert memory_format(CPU, torch.bfloat16) == torch.channels_last


# A freed 256 MB block, allocated again: page faults of the second allocation, as numbers.
REALLOCATE = textwrap.dedent(
    """
    import resource, sys
    import torch
    from soundsup.device import retain_freed_host_memory
    if sys.argv[1] == "retain":
        assert retain_freed_host_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(64 * 2**20)
    del block
    before = faults()
    block = torch.ones(64 * 2**20)
    print(faults() - before)
    """
)


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)
def test_retained_host_memory_is_reused_without_page_faults():
    def second_allocation_faults(mode: str) -> int:
        result = subprocess.run(
            [sys.executable, "-c", REALLOCATE, mode], capture_output=True, text=True, check=True
        )
        return int(result.stdout.strip())

    pages = 256 * 2**20 // 4096
    assert second_allocation_faults("default") > pages // 2  # returned to the kernel, faulted back
    assert second_allocation_faults("retain") < pages // 20  # kept by malloc and reused
