"""The GPU and software a rank runs with (rank side: imports torch)."""

from __future__ import annotations

import platform
import shutil
import subprocess
from typing import Any


def environment(device: Any) -> dict[str, Any]:
    """The GPU name and the driver, CUDA, torch, NCCL and Python versions."""
    import torch

    cuda = device.type == "cuda"
    nccl = ".".join(map(str, torch.cuda.nccl.version())) if cuda else None
    return {
        "gpu_name": torch.cuda.get_device_name(device) if cuda else None,
        "versions": {
            "driver": _driver_version() if cuda else None,
            "cuda": torch.version.cuda,
            "torch": torch.__version__,
            "nccl": nccl,
            "python": platform.python_version(),
        },
    }


def _driver_version() -> str | None:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    proc = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True)
    lines = proc.stdout.split()
    return lines[0] if proc.returncode == 0 and lines else None
