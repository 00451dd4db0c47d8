"""xlc never deletes or overwrites a user's files, and one process at a time writes an output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import polars as pl
import pytest
from click.testing import CliRunner

import xlc
from xlc import files, model, onnx
from xlc.cli import main
from xlc.errors import XlcError
from xlc.rundir import RUN_FILE, run_lock
from xlc.scoring import lock_file

USER_FILES = {"notes.txt": "precious", "sub/data.csv": "a,b\n1,2\n", ".hidden": "x", "model.onnx": "mine"}


def fill(folder):
    """A folder full of a user's files (and a subfolder)."""
    for name, text in USER_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def snapshot(folder):
    """Every file under `folder` with its bytes: what must not change."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(result):
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not a crash with a traceback
    assert len(result.output.strip().splitlines()) == 1, result.output
    return result.output


@pytest.fixture(scope="module")
def hf_model(tiny_model, tmp_path_factory):
    """What a run's best/ holds for `xlc export`: a Hugging Face classifier folder with xlc.json."""
    folder = tmp_path_factory.mktemp("hf") / "model"
    model.from_base(str(tiny_model), ("a", "b")).save(folder)
    return folder


# -------------------------------------------------------------------------------- xlc export --out


def test_export_into_a_folder_with_user_files_is_refused(hf_model, tmp_path):
    user = fill(tmp_path / "userexp")
    before = snapshot(user)
    output = one_line_error(CliRunner().invoke(main, ["export", "--model", str(hf_model), "--out", str(user)]))
    assert str(user) in output and "xlc did not write" in output and "--overwrite" in output
    assert snapshot(user) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["userexp"]  # no temp folder left beside it


@pytest.mark.parametrize("where", [".", "home", "parent"])
def test_export_into_the_current_home_or_a_parent_folder_is_refused_even_with_overwrite(
        hf_model, tmp_path, monkeypatch, where):
    home = fill(tmp_path / "home")
    work = fill(home / "project")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    out = {".": ".", "home": "~", "parent": ".."}[where]
    before = snapshot(home)
    for extra in ([], ["--overwrite"]):
        output = one_line_error(CliRunner().invoke(
            main, ["export", "--model", str(hf_model), "--out", os.path.expanduser(out), *extra]))
        assert "never replaces" in output
    assert snapshot(home) == before


def test_export_replaces_an_earlier_export_and_marks_its_folder(hf_model, tmp_path):
    out = tmp_path / "exported"
    for _ in range(2):
        result = CliRunner().invoke(main, ["export", "--model", str(hf_model), "--out", str(out)])
        assert result.exit_code == 0, result.output
    assert files.marked_kind(out) == "export"
    assert (out / onnx.ONNX_FILE).is_file()
    assert json.loads((out / files.MARKER).read_text())["made_by"] == "xlc"


def test_export_with_overwrite_replaces_only_a_flat_folder_of_files(hf_model, tmp_path):
    flat = tmp_path / "old-export"
    flat.mkdir()
    (flat / "model.onnx").write_text("stale")
    result = CliRunner().invoke(main, ["export", "--model", str(hf_model), "--out", str(flat), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (flat / "model.onnx").stat().st_size > 1000
    deep = fill(tmp_path / "deep")
    before = snapshot(deep)
    output = one_line_error(CliRunner().invoke(
        main, ["export", "--model", str(hf_model), "--out", str(deep), "--overwrite"]))
    assert "subfolders" in output
    assert snapshot(deep) == before


def test_export_into_a_run_folder_or_its_models_is_refused(hf_model, tmp_path):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    files.mark(run, "run")
    files.mark(run / "best", "model")
    (run / "best" / "model.safetensors").write_text("weights")
    before = snapshot(run)
    for target in (run, run / "best"):
        output = one_line_error(CliRunner().invoke(main, ["export", "--model", str(hf_model), "--out", str(target)]))
        assert "not an xlc export folder" in output
    assert snapshot(run) == before


def test_atomic_dir_never_removes_what_xlc_did_not_make(tmp_path):
    user = fill(tmp_path / "target")
    stray = fill(tmp_path / ".other.tmp")  # a user's folder where xlc would put its temp folder
    before, stray_before = snapshot(user), snapshot(stray)
    with pytest.raises(XlcError, match="xlc did not write"), files.atomic_dir(user):
        pass
    with pytest.raises(XlcError, match="not written by xlc"), files.atomic_dir(tmp_path / "other"):
        pass
    assert snapshot(user) == before and snapshot(stray) == stray_before
    with files.atomic_dir(tmp_path / "mine") as tmp:  # xlc's own folder: made, then replaced
        (tmp / "a").write_text("1")
    with files.atomic_dir(tmp_path / "mine") as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == [files.MARKER, "b"]


# ----------------------------------------------------------------------------- selftrain --out


def selftrain_args(tiny_model, small_files, out, *extra):
    return ["selftrain", "--quiet", "--model", str(tiny_model), "--out", str(out),
            "--train", str(small_files["train"]), "--unlabeled", str(small_files["unlabeled"]),
            "--dev", str(small_files["dev"]), "--epochs", "1", "--max-length", "16", "--max-rounds", "0", *extra]


def test_selftrain_into_a_folder_with_user_files_is_refused_before_writing(tiny_model, small_files, tmp_path):
    user = fill(tmp_path / "project")
    (user / "best").mkdir()
    (user / "best" / "weights.bin").write_text("mine")
    (user / "report.md").write_text("my report")
    before = snapshot(user)
    output = one_line_error(CliRunner().invoke(main, selftrain_args(tiny_model, small_files, user)))
    assert str(user) in output and "xlc did not write" in output
    assert snapshot(user) == before


def test_selftrain_refuses_a_folder_whose_run_file_is_not_xlcs(tiny_model, small_files, tmp_path):
    user = fill(tmp_path / "project")
    (user / RUN_FILE).write_text("my own run.json\n")
    before = snapshot(user)
    output = one_line_error(CliRunner().invoke(main, selftrain_args(tiny_model, small_files, user)))
    assert "is not an xlc run's" in output
    assert snapshot(user) == before


def test_a_failed_selftrain_leaves_no_folder_behind(tiny_model, small_files, tmp_path):
    out = tmp_path / "new-run"
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"text": ["a", "b"], "label": ["x", None]}).write_parquet(bad)
    args = selftrain_args(tiny_model, dict(small_files, train=bad), out)
    output = one_line_error(CliRunner().invoke(main, args))
    assert "missing label" in output
    assert not out.exists()


# ---------------------------------------------------------------------------- xlc.selftrain(out=)


@pytest.fixture(scope="module")
def finished_api_run(tiny_model, module_files, tmp_path_factory):
    frames = {role: pl.read_parquet(path) for role, path in module_files.items() if role != "test"}
    out = tmp_path_factory.mktemp("api") / "run"
    xlc.selftrain(**frames, model=str(tiny_model), out=out, epochs=1, max_length=16, max_rounds=0)
    return out, frames


def test_api_selftrain_on_a_finished_run_writes_nothing(finished_api_run):
    out, frames = finished_api_run
    before = snapshot(out)
    with pytest.raises(XlcError, match="already holds a finished run"):
        xlc.selftrain(train=frames["train"].head(20), unlabeled=frames["unlabeled"], dev=frames["dev"],
                      out=out, epochs=1, max_length=16, max_rounds=0)
    assert snapshot(out) == before
    assert pl.read_parquet(out / "inputs" / "train.parquet").height == frames["train"].height


def test_api_selftrain_on_an_unfinished_run_keeps_its_inputs(tiny_model, small_files, tmp_path):
    frames = {role: pl.read_parquet(path) for role, path in small_files.items() if role != "test"}
    settings = {"model": str(tiny_model), "epochs": 1, "max_length": 16, "max_rounds": 0}
    out = tmp_path / "run"
    xlc.selftrain(**frames, out=out, **settings)
    (out / "report.json").unlink()  # as if killed before the end
    inputs = snapshot(out / "inputs")
    with pytest.raises(XlcError, match="unfinished run made with different train data"):
        xlc.selftrain(**dict(frames, train=frames["train"].head(20)), out=out, **settings)
    assert snapshot(out / "inputs") == inputs
    run = xlc.selftrain(**frames, out=out, **settings)  # the same data resumes it
    assert (run.out / "report.json").is_file()
    assert snapshot(out / "inputs") == inputs


def test_api_selftrain_into_a_folder_with_user_files_writes_nothing(tiny_model, small_files, tmp_path):
    user = fill(tmp_path / "project")
    before = snapshot(user)
    train = pl.read_parquet(small_files["train"])
    with pytest.raises(XlcError, match="xlc did not write"):
        xlc.selftrain(train=train, unlabeled=small_files["unlabeled"], dev=small_files["dev"], out=user,
                      model=str(tiny_model))
    assert snapshot(user) == before


def test_api_selftrain_with_bad_settings_writes_nothing(tiny_model, small_files, tmp_path):
    out = tmp_path / "run"
    train = pl.read_parquet(small_files["train"])
    with pytest.raises(XlcError, match="--epochs must be >= 1"):
        xlc.selftrain(train=train, unlabeled=small_files["unlabeled"], dev=small_files["dev"], out=out,
                      model=str(tiny_model), epochs=0)
    assert not out.exists()


# ------------------------------------------------------------------------------------------ locks


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from xlc import files
    from xlc.rundir import run_lock
    kind, path = sys.argv[1], Path(sys.argv[2])
    lock = run_lock(path) if kind == "run" else files.locked(path, str(path))
    with lock:
        print("locked", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def holder():
    """Start a process that holds a lock (`kind` "run": a run folder, else a lock file) until killed."""
    started = []

    def start(kind, path):
        process = subprocess.Popen([sys.executable, "-c", HOLDER, kind, str(path)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "locked", process.stderr.read()
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_a_second_selftrain_on_the_same_folder_is_refused_naming_the_first(holder, tiny_model, small_files,
                                                                           tmp_path):
    out = tmp_path / "run"
    first = holder("run", out)
    output = one_line_error(CliRunner().invoke(main, selftrain_args(tiny_model, small_files, out)))
    assert f"--out {out} is in use by another xlc process (pid {first.pid})" in output
    assert not (out / RUN_FILE).exists()


def test_a_killed_holder_leaves_no_stale_lock(holder, tmp_path):
    out = tmp_path / "run"
    first = holder("run", out)
    with pytest.raises(XlcError, match=f"pid {first.pid}"), run_lock(out):
        pass
    first.send_signal(signal.SIGKILL)
    first.wait()
    with run_lock(out) as unfinished:  # taken at once: the lock died with its process
        assert unfinished is None


def test_a_second_score_on_the_same_output_is_refused_naming_the_first(holder, tiny_onnx, tmp_path):
    source = tmp_path / "texts.parquet"
    pl.DataFrame({"text": ["ein Text", "noch einer"]}).write_parquet(source)
    output_file = tmp_path / "scores.parquet"
    first = holder("file", lock_file(output_file))
    output = one_line_error(CliRunner().invoke(main, ["score", "--quiet", "--model", str(tiny_onnx), "--input",
                                                      str(source), "--out", str(output_file)]))
    assert f"--out {output_file} is in use by another xlc process (pid {first.pid})" in output
    assert not output_file.exists() and not output_file.with_name("scores.parquet.parts").exists()


def test_int8_quantisation_waits_for_the_process_already_quantising(holder, tiny_onnx, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_onnx, folder)
    first = holder("file", folder / onnx.INT8_LOCK)
    waiting = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; from xlc import onnx; "
                                "onnx.quantize_int8(Path(sys.argv[1]))", str(folder)],
                               stderr=subprocess.PIPE, text=True)
    with pytest.raises(subprocess.TimeoutExpired):
        waiting.wait(timeout=3)  # blocked while the other process holds the lock
    assert not (folder / onnx.INT8_FILE).exists()
    first.kill()
    first.wait()
    assert waiting.wait(timeout=120) == 0, waiting.stderr.read()
    assert (folder / onnx.INT8_FILE).is_file() and not (folder / onnx.INT8_LOCK).exists()


# ---------------------------------------------------------------------- a bad --model for selftrain


def _selftrain_args(encoder, files_, out, *extra):
    return ["selftrain", "--quiet", "--model", str(encoder), "--out", str(out), "--train", str(files_["train"]),
            "--unlabeled", str(files_["unlabeled"]), "--dev", str(files_["dev"]), "--epochs", "1",
            "--max-length", "16", "--max-rounds", "0", *extra]


def _broken_copies(tiny_model, folder):
    """Model folders that are wrong in one way each, with what the error must say."""
    no_config = shutil.copytree(tiny_model, folder / "no_config")
    (no_config / "config.json").unlink()
    no_type = shutil.copytree(tiny_model, folder / "no_type")
    (no_type / "config.json").write_text('{"hidden_size": 32}')
    decoder = shutil.copytree(tiny_model, folder / "decoder")
    (decoder / "config.json").write_text('{"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2}')
    no_weights = shutil.copytree(tiny_model, folder / "no_weights")
    for weights in [*no_weights.glob("*.safetensors"), *no_weights.glob("*.bin")]:
        weights.unlink()
    return [
        (folder / "missing", "no such folder"),
        (no_config, f"no config.json in {no_config}"),
        (no_type, "names no model_type"),
        (decoder, "describes a 'gpt2' model, not a text encoder"),
        (no_weights, f"no weights in {no_weights}"),
    ]


def test_a_bad_model_fails_before_the_run_folder_exists(tiny_model, small_files, tmp_path):
    for encoder, says in _broken_copies(tiny_model, tmp_path):
        out = tmp_path / f"run-{encoder.name}"
        output = one_line_error(CliRunner().invoke(main, _selftrain_args(encoder, small_files, out)))
        assert f"--model '{encoder}'" in output and says in output, output
        assert not out.exists()
        with pytest.raises(XlcError, match=says):
            xlc.selftrain(**{r: small_files[r] for r in ("train", "unlabeled", "dev")}, model=str(encoder),
                          out=out, epochs=1, max_rounds=0)
        assert not out.exists()


def test_unreadable_weights_name_the_folder_and_do_not_block_the_corrected_retry(tiny_model, small_files,
                                                                                tmp_path):
    broken = shutil.copytree(tiny_model, tmp_path / "broken")
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not safetensors at all")
    out = tmp_path / "run"
    output = one_line_error(CliRunner().invoke(main, _selftrain_args(broken, small_files, out)))
    assert f"{broken}: cannot load the model's weights" in output and "free some space" not in output
    assert not out.exists()  # nothing committed: nothing left behind
    out.mkdir()
    files.mark(out, "run")  # as a killed first attempt would leave it: started, nothing committed
    (out / RUN_FILE).write_text(json.dumps({"settings": {"model": str(broken)}, "inputs": {}, "model": {}}))
    (out / "round-00").mkdir()
    retry = CliRunner().invoke(main, _selftrain_args(tiny_model, small_files, out))
    assert retry.exit_code == 0, retry.output
    assert (out / "report.json").is_file()
