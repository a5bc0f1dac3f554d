"""What a run runs on, for its provenance.json: torch's version, the CUDA torch was built with, the device's name."""

from __future__ import annotations

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
