"""Provenance of a results file: minutes of the runs, hardware, package versions, paths relative to the repository."""

from __future__ import annotations

import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .profiles import ROOT


def runs_minutes(datasets: Any, work: Path) -> float:
    """Minutes of every reported run (self-training, test scoring, logistic regression), summed."""
    seconds = sum(r["seconds"]["selftrain"] + r["seconds"]["test"] for ds in datasets for r in ds["runs"])
    for ds in datasets:
        logreg = work / ds["spec"]["name"] / "logreg" / "summary.json"
        if "logreg" in ds["methods"] and logreg.is_file():
            seconds += json.loads(logreg.read_text())["seconds"]
    return seconds / 60


def hardware() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"cpu": cpu, "cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else None, "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "platform": platform.platform(), "python": platform.python_version()}


def package_version(dist: str, missing: str = "not installed") -> str:
    """The installed version of distribution `dist`, or `missing` when it is not installed."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return missing


def versions() -> dict:
    return {d: package_version(d) for d in ("xlc", "torch", "transformers", "optimum-onnx", "onnxruntime",
                                            "polars", "scikit-learn", "numpy", "matplotlib")}


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
