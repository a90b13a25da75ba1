"""Automatic device choice: CUDA when present, else CPU; bf16 where the hardware has it."""

import os
import time
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class Device:
    name: str  # "cuda" or "cpu"
    bf16: bool

    @property
    def cuda(self) -> bool:
        return self.name == "cuda"

    @property
    def target(self) -> str:
        """Where this process's tensors go: in a multi-GPU job each process has its own GPU (LOCAL_RANK)."""
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if self.cuda else self.name


def pick_device() -> Device:
    if torch.cuda.is_available():
        return Device("cuda", torch.cuda.is_bf16_supported())
    return Device("cpu", _cpu_has_bf16())


@lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    """AVX-512 BF16 (or AMX) makes bf16 matrix products faster than float32; without them bf16 is
    emulated, about a hundred times slower. The flag is checked, then a small product timed in both.
    On the AVX-512-BF16 EPYC a whole packed LoRA step under bf16 autocast took 2.39 CPU s against
    4.60 s in float32 (the README's Performance section), so the product speaks for the step."""
    if not cpu_has_bf16_instructions():
        return False
    matrix = torch.randn(256, 256)
    return _seconds(matrix.bfloat16()) < _seconds(matrix)


def cpu_has_bf16_instructions() -> bool:
    """AVX-512 BF16 (AMX CPUs have it too): bf16 products run in hardware, not emulated."""
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(check and check())


def _seconds(matrix: torch.Tensor) -> float:
    """The fastest of five products: on a machine loaded by other work, being preempted only ever adds
    time, and one preemption in a sum could pick float32 on a CPU whose bf16 is twice as fast."""
    matrix @ matrix  # warm up
    fastest = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        matrix @ matrix
        fastest = min(fastest, time.perf_counter() - started)
    return fastest


def memory_mb(device: Device) -> float:
    """Peak memory of this process so far: GPU memory on CUDA, resident memory on CPU."""
    if device.cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@lru_cache(maxsize=2)
def peak_flops(device: Device) -> float:
    """Matrix-multiply FLOP/s this device reaches in the training precision, measured once (~0.2 s).

    The yardstick for "share of this machine's compute" that the Jobs tab shows.
    """
    dtype = torch.bfloat16 if device.bf16 else torch.float32
    size = 4096 if device.cuda else 1024
    a = torch.randn(size, size, dtype=dtype, device=device.name)
    a @ a  # warm-up
    repeats = 20 if device.cuda else 4
    if device.cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ a
    if device.cuda:
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def training_flops_per_token(model) -> float:
    """About 4 FLOPs per weight per token for adapter training: 2 forward, 2 for the input
    gradients backward; the frozen weights need no weight gradients."""
    if hasattr(model, "get_nb_trainable_parameters"):  # peft counts 4-bit packed weights whole
        return 4 * model.get_nb_trainable_parameters()[1]
    return 4 * sum(p.numel() for p in model.parameters())
