"""The Docker image, built and run for real: `docker build` (layer cache on), then xlc in containers.

Skipped, with the reason, where no docker client or daemon answers, where the base image cannot be
found or pulled, or where the client cannot build with BuildKit. Two environment variables adapt
the build to a machine (README, "Docker"): XLC_DOCKER, the docker client (default `docker`), and
XLC_DOCKER_BUILD_ARGS, extra `docker build` arguments (base image, network, pip's CA bundle).
The image is tagged xlc:pytest, so an xlc:cpu built by hand is left alone.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import xlc
from xlc.cli import main

ROOT = Path(__file__).resolve().parents[1]
TAG = "xlc:pytest"
NO_BUILDKIT = "buildx component is missing"


def docker_client() -> list[str]:
    return shlex.split(os.environ.get("XLC_DOCKER", "docker"))


def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*docker_client(), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DOCKER_BUILDKIT": "1"})


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def base_image(build_args: list[str]) -> str:
    """BASE_IMAGE from the build arguments, else the Dockerfile's default."""
    values = [value for flag, value in zip(build_args, build_args[1:], strict=False) if flag == "--build-arg"]
    values += [arg.split("=", 1)[1] for arg in build_args if arg.startswith("--build-arg=")]
    for value in values:
        if value.startswith("BASE_IMAGE="):
            return value.split("=", 1)[1]
    match = re.search(r"^ARG BASE_IMAGE=(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "the Dockerfile declares ARG BASE_IMAGE=<default>"
    return match.group(1)


@pytest.fixture(scope="module")
def image() -> str:
    """xlc:pytest built from this checkout (minutes when the cache is cold, seconds when warm)."""
    if shutil.which(docker_client()[0]) is None:
        pytest.skip(f"no docker client {docker_client()[0]!r} on PATH (set XLC_DOCKER to another one)")
    info = docker("info", "--format", "{{.ServerVersion}}", timeout=60)
    if info.returncode != 0:
        pytest.skip(f"no Docker daemon answers `docker info`: {last_line(info)}")
    build_args = shlex.split(os.environ.get("XLC_DOCKER_BUILD_ARGS", ""))
    base = base_image(build_args)
    if docker("image", "inspect", base).returncode != 0:
        pulled = docker("pull", base, timeout=900)
        if pulled.returncode != 0:
            pytest.skip(f"base image {base} is not available ({last_line(pulled)}); make one and pass it with "
                        "XLC_DOCKER_BUILD_ARGS='--build-arg BASE_IMAGE=...' (README, \"Docker\")")
    built = docker("build", "--progress", "plain", "-t", TAG, *build_args, str(ROOT), timeout=3600)
    if built.returncode != 0 and NO_BUILDKIT in built.stderr:
        pytest.skip("this docker client builds with BuildKit only through the buildx plugin, which is missing: "
                    "install it, or set XLC_DOCKER to a client with BuildKit built in (Docker 20.10-22)")
    assert built.returncode == 0, "docker build failed:\n" + "\n".join(built.stderr.splitlines()[-40:])
    return TAG


def run(image: str, *args: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`docker run` without a network: the image must hold everything a run needs."""
    result = docker("run", "--rm", "--network", "none", *options, image, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_image_runs_xlc_as_a_user_with_the_bundled_plugin(image):
    assert xlc.__version__ in run(image, "xlc", "--version").stdout
    assert run(image, "id", "-u").stdout.strip() == "1000"
    assert run(image, "find", "/opt/xlc", "/opt/venv", "!", "-readable").stdout == ""  # the default model too
    selectors = run(image, "xlc", "selectors").stdout
    assert "balanced" in selectors
    assert "prior" in selectors and "margin" in selectors and "xlc-classprior" in selectors


def test_image_scores_a_mounted_model_like_the_host_does(image, tiny_onnx, demo_frame, tmp_path):
    texts = demo_frame.filter(pl.col("split") == "test").select("text").head(40)
    texts.write_parquet(tmp_path / "texts.parquet")
    mounts = ("-v", f"{tiny_onnx}:/model:ro", "-v", f"{tmp_path}:/data",
              "--user", f"{os.getuid()}:{os.getgid()}")  # the mounted folders' owner (README, "Docker")
    run(image, "xlc", "score", "--quiet", "--model", "/model", "--input", "texts.parquet",
        "--out", "scores.parquet", options=mounts)
    host = CliRunner().invoke(main, ["score", "--quiet", "--model", str(tiny_onnx),
                                     "--input", str(tmp_path / "texts.parquet"),
                                     "--out", str(tmp_path / "host.parquet")])
    assert host.exit_code == 0, host.output
    in_container, on_host = pl.read_parquet(tmp_path / "scores.parquet"), pl.read_parquet(tmp_path / "host.parquet")
    assert in_container.height == texts.height and in_container.columns == on_host.columns
    assert in_container["label"].to_list() == on_host["label"].to_list()
    probabilities = [c for c in on_host.columns if c.startswith("p_")]
    assert probabilities
    for column in probabilities:
        assert (in_container[column] - on_host[column]).abs().max() < 1e-4
