"""`--engine ray`: a real local Ray instance (2 CPUs), the tiny exported model, real files, a real kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import ray
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from xlc import XlcError, data
from xlc.cli import main
from xlc.config import SelfTrainConfig
from xlc.loop import run as selftrain
from xlc.scoring import ScoreJob, score_file
from xlc.scoring import ray as ray_engine
from xlc.scoring.ray import RayOptions, plan_resources, read_scores, score_files

TOLERANCE = {"check_exact": False, "abs_tol": 1e-5, "rel_tol": 0}
ROWS = 6_000


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (the engine reuses a live connection)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, demo_frame) -> tuple[Path, Path]:
    """Three input files (Parquet with empty texts, CSV, JSONL), and one Parquet file with the same rows."""
    root = tmp_path_factory.mktemp("ray-input")
    inputs = root / "in"
    inputs.mkdir()
    texts = demo_frame.sample(ROWS, seed=5, with_replacement=True)["text"].to_list()
    texts[3], texts[10], texts[400] = None, "   ", ""
    frame = pl.DataFrame({"text": texts, "other": range(ROWS)})
    frame.slice(0, 2500).write_parquet(inputs / "a.parquet")
    frame.slice(2500, 1500).write_csv(inputs / "b.csv")
    frame.slice(4000).write_ndjson(inputs / "c.jsonl")
    (inputs / "_notes.parquet").write_bytes(b"not a table")  # skipped, as Spark and Arrow do
    whole = pl.concat([data.read_table(p).select("text") for p in sorted(inputs.glob("[abc].*"))])
    whole.write_parquet(root / "whole.parquet")
    return inputs, root / "whole.parquet"


def _session_processes(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True, check=True).stdout
    return [int(p) for p, s in (line.split() for line in out.splitlines()) if int(s) == sid]


def test_a_killed_job_resumes_and_matches_the_local_engine(local_ray, tiny_onnx, folder, tmp_path):
    inputs, whole = folder
    out = tmp_path / "scores"
    options = ["--model", str(tiny_onnx), "--input", str(inputs), "--out", str(out),
               "--chunk-size", "500", "--max-length", "32", "--quiet"]
    # A real interruption: the CLI joins this module's Ray instance as a second driver, scoring
    # slowly (batch size 1, one actor), and is SIGKILLed once parts appear.
    address = ray.get_runtime_context().gcs_address
    child = subprocess.Popen([sys.executable, "-m", "xlc.cli", "score", "--engine", "ray", "--ray-address",
                              address, "--workers", "1", "--batch-size", "1", *options],
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300  # generous: a loaded machine starts Ray workers slowly
        while not any(out.glob("part-*.parquet")) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        _, stderr = child.communicate()
        for pid in _session_processes(child.pid):  # anything it started in its own process group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    before = {p.name for p in out.glob("part-*.parquet")}
    assert before, stderr.decode()[-2000:]
    assert not (out / ray_engine.DONE).exists()
    assert pl.scan_parquet(out / "part-*.parquet").select(pl.len()).collect().item() < ROWS

    result = CliRunner().invoke(main, ["score", "--engine", "ray", "--workers", "2", *options])
    assert result.exit_code == 0, result.output
    assert f"resumed {len(before)} finished part(s)" in result.output and "3 empty text(s)" in result.output
    assert before <= {p.name for p in out.glob("part-*.parquet")}  # finished parts were kept, not redone
    scored = read_scores(out)
    assert scored["id"].to_list() == list(range(ROWS))  # row numbers across files in path order, once each
    score_file(ScoreJob(tiny_onnx, whole, tmp_path / "local.parquet", chunk_size=500, max_length=32))
    assert_frame_equal(scored, pl.read_parquet(tmp_path / "local.parquet"), **TOLERANCE)
    again = CliRunner().invoke(main, ["score", "--engine", "ray", "--workers", "2", *options])
    assert again.exit_code == 0 and "is already complete" in again.output  # said, not redone or refused
    with pytest.raises(XlcError, match="holds a finished run; pass --overwrite"):  # another job on it
        score_files(ScoreJob(tiny_onnx, inputs, out, chunk_size=500, max_length=16))


def test_kept_columns_reach_the_ray_output_as_the_local_engine_writes_them(local_ray, tiny_onnx, demo_frame,
                                                                          tmp_path):
    rows = demo_frame.sample(30, seed=11)
    texts = rows["text"].to_list()
    texts[4], texts[12] = None, "  "  # in the Parquet file: CSV would not keep None and "" apart
    frame = pl.DataFrame({"text": texts, "lang": rows["lang"], "label": rows["label"]},
                         schema_overrides={"text": pl.String})
    inputs = tmp_path / "in"
    inputs.mkdir()
    frame.slice(0, 18).write_parquet(inputs / "a.parquet")
    frame.slice(18).write_csv(inputs / "b.csv")
    frame.write_parquet(tmp_path / "whole.parquet")
    settings = {"chunk_size": 7, "max_length": 32, "keep_columns": ("text", "lang", "label")}
    score_files(ScoreJob(tiny_onnx, inputs, tmp_path / "ray", **settings), RayOptions(workers=1, progress_bars=False))
    score_file(ScoreJob(tiny_onnx, tmp_path / "whole.parquet", tmp_path / "local.parquet", **settings))
    scored = read_scores(tmp_path / "ray")
    assert scored.columns[:5] == ["id", "text", "lang", "gold", "label"]
    assert scored["gold"].to_list() == frame["label"].to_list()
    assert_frame_equal(scored, pl.read_parquet(tmp_path / "local.parquet"), **TOLERANCE)


def test_selftrain_engine_ray_scores_the_pool_on_ray(local_ray, tiny_model, small_files, tmp_path,
                                                     monkeypatch):
    calls = []
    real = ray_engine.score_frame
    monkeypatch.setattr(ray_engine, "score_frame", lambda *a, **k: calls.append(a[0].height) or real(*a, **k))
    settings = {"model": str(tiny_model), "epochs": 1, "batch_size": 16, "max_length": 32, "max_rounds": 1,
                "selector": "throttling", "selector_options": {"n": 7},
                **{role: str(path) for role, path in small_files.items()}}
    on_ray = selftrain(SelfTrainConfig(out=str(tmp_path / "ray"), engine="ray", workers=1, **settings))
    local = selftrain(SelfTrainConfig(out=str(tmp_path / "local"), **settings))
    assert calls == [60]  # round 0's pool; the last round only evaluates
    scored = [pl.read_parquet(tmp_path / run / "round-00" / "scored.parquet") for run in ("ray", "local")]
    assert_frame_equal(*scored, **TOLERANCE)
    assert_frame_equal(on_ray.pseudo_labels, local.pseudo_labels, **TOLERANCE)
    assert SelfTrainConfig.from_toml(tmp_path / "ray" / "config.toml").engine == "ray"


# Without a Ray instance: planning, naming, checks, errors.


def test_actors_take_fractional_cpus_and_leave_room_for_reads_and_writes():
    two_cores = plan_resources(2, 1, 0, RayOptions(workers=2), None)
    assert two_cores.actor_cpus * 2 <= 2 - 2 * ray_engine.TASK_CPUS and two_cores.threads == 1
    assert plan_resources(2, 1, 0, RayOptions(), None).workers == 1
    two_nodes = plan_resources(2, 2, 0, RayOptions(workers=2), None)  # one CPU per node
    assert 1 - two_nodes.actor_cpus >= 2 * ray_engine.TASK_CPUS
    assert plan_resources(64, 2, 4, RayOptions(num_gpus=0.5), None).workers == 8
    with pytest.raises(XlcError, match="--num-gpus 1.0: the Ray cluster has 0 GPU"):
        plan_resources(2, 1, 0, RayOptions(num_gpus=1.0), None)


def test_inputs_are_files_folders_or_globs_in_path_order(tmp_path):
    for name in ("b.csv", "a.parquet", "c.jsonl", ".hidden.csv", "notes.txt"):
        (tmp_path / name).write_text("text\nx\n")
    found = ray_engine.input_files(tmp_path, tmp_path / "out")
    assert [p.name for p in found] == ["a.parquet", "b.csv", "c.jsonl"]
    assert [p.name for p in ray_engine.input_files(str(tmp_path / "*.csv"), tmp_path / "out")] == ["b.csv"]
    with pytest.raises(XlcError, match="no such file or folder"):
        ray_engine.input_files(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(XlcError, match="lies in --out"):
        ray_engine.input_files(str(tmp_path / "**" / "*.csv"), tmp_path)


def test_read_tasks_copy_ids_and_skip_finished_rows(tmp_path):
    pl.DataFrame({"body": ["a", "b", "c", "d", "e"], "key": ["k0", "k1", "k2", "k3", "k4"]}).write_csv(
        tmp_path / "in.csv")
    source = ray_engine.Source(index=3, path=str(tmp_path / "in.csv"), rows=5, offset=100)
    blocks = list(ray_engine._read_file(source, "body", "key", 2, [(1, 3)]))
    rows = pl.concat([pl.from_arrow(b) for b in blocks])
    assert rows.to_dict(as_series=False) == {"id": ["k0", "k3", "k4"], "text": ["a", "d", "e"],
                                             "_file": [3, 3, 3], "_row": [0, 3, 4]}
    numbered = pl.concat([pl.from_arrow(b) for b in ray_engine._read_file(source, "body", None, 2, [])])
    assert numbered["id"].to_list() == [100, 101, 102, 103, 104]


def test_ids_must_be_unique_across_files(tiny_onnx, tmp_path):
    pl.DataFrame({"text": ["a", "b"], "key": [1, 2]}).write_parquet(tmp_path / "a.parquet")
    pl.DataFrame({"text": ["c"], "key": [2]}).write_csv(tmp_path / "b.csv")
    job = ScoreJob(tiny_onnx, tmp_path, tmp_path / "out", id_column="key")
    with pytest.raises(XlcError, match="duplicate or missing ids; ids must be unique across all input files"):
        ray_engine.plan_sources(job, ray_engine.input_files(tmp_path, tmp_path / "out"))


def test_parts_are_cut_at_chunk_boundaries_and_gaps():
    frame = pl.DataFrame({"id": range(9), "_file": [0, 0, 0, 0, 0, 1, 1, 0, 0],
                          "_row": [7, 8, 9, 10, 11, 0, 1, 20, 21]})
    runs = [(f, a, b, rows["id"].to_list()) for f, a, b, rows in ray_engine._runs(frame, chunk_size=10)]
    assert runs == [(0, 7, 10, [0, 1, 2]), (0, 10, 12, [3, 4]), (0, 20, 22, [7, 8]), (1, 0, 2, [5, 6])]


def test_overlapping_parts_are_refused(tmp_path):
    for start, stop in ((0, 10), (5, 15)):
        (tmp_path / ray_engine.part_name(0, start, stop)).write_bytes(b"")
    with pytest.raises(XlcError, match="overlap at row 5"):
        ray_engine.finished_parts(tmp_path)


def test_an_unfinished_output_with_other_options_is_refused(tiny_onnx, folder, tmp_path):
    inputs, _ = folder
    job = ScoreJob(tiny_onnx, inputs, tmp_path / "out", max_length=64)
    paths = ray_engine.input_files(inputs, job.output)
    ray_engine.prepare_output(job, ray_engine.fingerprint(job, tiny_onnx, paths))
    other = ScoreJob(tiny_onnx, inputs, tmp_path / "out", max_length=32)
    with pytest.raises(XlcError, match="unfinished run with a different max_length"):
        ray_engine.prepare_output(other, ray_engine.fingerprint(other, tiny_onnx, paths))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("")
    with pytest.raises(XlcError, match="a folder that xlc did not write"):
        ray_engine.prepare_output(ScoreJob(tiny_onnx, inputs, tmp_path / "mine", overwrite=True), {})


def test_ray_options_need_the_ray_engine(tiny_onnx, folder, tmp_path):
    inputs, whole = folder
    runner = CliRunner()
    result = runner.invoke(main, ["score", "--model", str(tiny_onnx), "--input", str(whole),
                                  "--out", str(tmp_path / "o.parquet"), "--workers", "2"])
    assert result.exit_code != 0 and "are for --engine ray" in result.output
    result = runner.invoke(main, ["score", "--model", str(tiny_onnx), "--input", str(inputs),
                                  "--out", str(tmp_path / "o.parquet")])
    assert result.exit_code != 0 and "folders and globs need --engine ray" in result.output
    with pytest.raises(XlcError, match="--ray-address and --workers are for --engine ray"):
        SelfTrainConfig(workers=2)


def test_missing_ray_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(XlcError, match=r"pip install 'xlc\[ray\]'"):
        ray_engine._import_ray()


def test_a_local_ray_that_fails_to_start_gives_a_one_line_error(monkeypatch):
    def dies(**_: object) -> None:  # what ray.init raises when its raylet dies while starting
        raise Exception("Failed to start the raylet: timed out waiting for file metrics_agent_port")  # noqa: TRY002

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", dies)
    with pytest.raises(XlcError, match="a local Ray instance: cannot start or connect to Ray: Failed to start the "
                                       "raylet.*--engine local"), ray_engine.connected(RayOptions()):
        pass
