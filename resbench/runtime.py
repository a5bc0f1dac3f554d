"""What a run runs on: for its provenance.json, torch's version, the CUDA torch was built with and the device's
name; for the memory check, the memory this process and this machine's GPU have."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

CPU_INFO = Path("/proc/cpuinfo")


def cpu_name() -> str:
    """The processor's marketing name where Linux tells it (`model name`), else what the platform says."""
    try:
        for line in CPU_INFO.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def runtime_facts(device: torch.device | str) -> dict[str, str | None]:
    """provenance.json's torch_version, cuda_version (null for a CPU build) and device_name of `device`."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"torch_version": torch.__version__, "cuda_version": torch.version.cuda, "device_name": name}


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, where the OS tells."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


# The memory limit of a container (cgroup v2, then v1): "max" or an absurd number when there is none.
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def memory_limit() -> tuple[int, str] | None:
    """The most memory a run in this process may use, and what sets it: this machine's RAM, a container's
    cgroup limit, or the process's `ulimit -v`, whichever is least; None where nothing tells."""
    limits = []
    if (memory := physical_memory()) is not None:
        limits.append((memory, "this machine's memory"))
    for path in CGROUP_LIMITS:
        try:
            with open(path, encoding="ascii") as handle:
                text = handle.read().strip()
        except (OSError, ValueError):
            continue
        if text.isdigit():
            limits.append((int(text), "this container's memory limit"))
        break
    try:  # Unix only
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append((soft, "the address space limit (ulimit -v)"))
    except (ImportError, ValueError, OSError):
        pass
    return min(limits) if limits else None


def gpu_memory(device: str) -> tuple[int, str] | None:
    """The memory of the GPU a run of `device` (the config key: auto, cpu or cuda) would use here, and its
    name; None on the CPU (and where there is no GPU, which the device check refuses for device=cuda)."""
    if device == "cpu" or not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    return torch.cuda.get_device_properties(index).total_memory, f"the GPU's memory ({torch.cuda.get_device_name(index)})"
