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


# Page faults per training step of AlexNet (fc6/fc7 gradients ~220 MB, freed and re-made
# every step), after five warm-up steps, printed as a number. The heap settles within the first
# two or three steps: depending on where the first blocks landed, the second or the third step
# still grows it by ~36,000 pages (seen on one machine as 11,856 faults per step averaged over
# steps 3-5), so the count starts after the heap has reached its size.
STEP_FAULTS = textwrap.dedent(
    """
    import resource, sys
    import torch
    from soundsup.device import retain_freed_host_memory
    from soundsup.pretext import PretextConfig, build_training, train_step
    if sys.argv[1] == "retain":
        assert retain_freed_host_memory()
    torch.set_num_threads(1)
    config = PretextConfig(batch_size=4, crop_size=64, precision="fp32")
    model, optimizer, scheduler = build_training("alexnet", 5, config, 100, 0, torch.device("cpu"))
    x, y = torch.randn(4, 3, 64, 64), torch.arange(4)
    for _ in range(5):
        train_step(model, x, y, optimizer, scheduler)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        train_step(model, x, y, optimizer, scheduler)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
    """
)


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)
def test_retained_host_memory_spares_every_training_step_its_page_faults():
    def faults_per_step(mode: str) -> int:
        result = subprocess.run(
            [sys.executable, "-c", STEP_FAULTS, mode], capture_output=True, text=True, check=True
        )
        return int(result.stdout.strip())

    gradient_pages = 50_000_000 * 4 // 4096  # fc6 + fc7 weights' gradients alone
    assert faults_per_step("default") > gradient_pages // 2  # handed back to the kernel, faulted in again
    assert faults_per_step("retain") < gradient_pages // 20  # kept by malloc and reused


def test_a_cap_on_onednns_instruction_set_turns_native_bf16_off(monkeypatch):
    # How a CPU without bf16 units is emulated on one with them (the demo is timed on both).
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not native_bf16(CPU) and autocast_dtype(CPU, "auto") is None
    assert autocast_dtype(CPU, "bf16") is torch.bfloat16  # forced, it is still honoured
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert native_bf16(CPU) == (
        torch.backends.mkldnn.is_available()
        and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    )
