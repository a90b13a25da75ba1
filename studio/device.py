"""Automatic device choice: CUDA when present, else CPU; bf16 where the hardware has it."""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Device:
    name: str  # "cuda" or "cpu"
    bf16: bool

    @property
    def cuda(self) -> bool:
        return self.name == "cuda"


def pick_device() -> Device:
    if torch.cuda.is_available():
        return Device("cuda", torch.cuda.is_bf16_supported())
    return Device("cpu", _cpu_has_bf16())


def _cpu_has_bf16() -> bool:
    # AVX-512 BF16 (or AMX) makes bf16 matrix products several times faster than float32.
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(check and check())


def memory_mb(device: Device) -> float:
    """Peak memory of this process so far: GPU memory on CUDA, resident memory on CPU."""
    if device.cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
