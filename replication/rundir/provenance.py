"""Provenance: what a stage records about where it ran -- machine, packages, code commit, peak memory."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import resource
import subprocess
from pathlib import Path
from typing import Any

import torch
from packaging.requirements import Requirement

from replication import __version__
from replication.dependencies import PYPROJECT, checkout, requirements

RUNTIME_EXTRAS = ("smollm2",)
"""Optional dependencies that shape a run's numbers (the test and lint extras do not)."""


def dependencies() -> list[str]:
    """The distributions the package runs on, from pyproject.toml, the one list of them."""
    return [Requirement(r).name for r in requirements(RUNTIME_EXTRAS)]


def reset_peak_memory() -> None:
    """Start a stage's peak-memory count: Linux resets VmHWM on writing 5 to clear_refs."""
    with contextlib.suppress(OSError):  # not Linux: the peak then counts from the process start
        Path("/proc/self/clear_refs").write_text("5")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict[str, float | None]:
    """Peak resident memory (MiB) since ``reset_peak_memory``, and peak CUDA allocation."""
    try:
        status = Path("/proc/self/status").read_text()
        rss = float(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024
    except (OSError, StopIteration):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_rss_mib": rss, "peak_cuda_mib": cuda}


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (platform.processor() is often empty on Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def driver_version() -> str | None:
    """The NVIDIA driver's version, as nvidia-smi reports it (torch does not say)."""
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        output = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return output.splitlines()[0].strip() if output.strip() else None


def machine() -> dict[str, Any]:
    """The machine a stage ran on: CPU model and cores; the GPU's name and memory and the CUDA, cuDNN
    and driver versions if there is one."""
    facts: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": None, "gpu_memory_gib": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
        facts.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), driver=driver_version())
    return facts


def float32_matmul() -> dict[str, Any]:
    """How float32 matrix products are computed: 'highest' and no TF32 is float32 throughout."""
    return {
        "precision": torch.get_float32_matmul_precision(),
        "cublas_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
    }


def code_commit() -> str:
    """The checkout's commit, marked when the code, claims or fixtures have uncommitted changes
    (a run's own files are tracked too, and writing them is no change of code); an installed
    package's version where it runs from no checkout."""
    if checkout() is None:
        return f"sae-replication {__version__} (installed, no checkout)"
    root = PYPROJECT.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "replication", "claims", "fixtures"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


def environment() -> dict[str, Any]:
    """Python, platform, machine, code commit and the versions of the packages the run used."""
    versions: dict[str, str | None] = {}
    for name in dependencies():
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        **machine(),
        "code_commit": code_commit(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "float32_matmul": float32_matmul(),
        "packages": versions,
    }
