"""Peak memory of `xlc score` at 100k and 1M rows, local and `--engine ray`: streaming must keep it flat.

    python benchmarks/score_memory.py [--rows 100000 1000000] [--engines local ray]

Each size runs `xlc score` in its own process on a pool built from the real demo sentences
(sampled with replacement, so the length distribution is real). The model is the tiny 2-layer
encoder with the real tokenizer: the numbers measure xlc's streaming (read, tokenise, score,
write parts), not encoder speed. Runs go one at a time.

Two figures per run:
- wait4: ru_maxrss of the `xlc score` process from wait4(). Linux folds in the peaks of the
  descendants it reaped, as a maximum, not a sum: for local it is the xlc process; for Ray the
  largest single process (driver, raylet, a worker, ...).
- sampled: every `--interval` seconds, the RSS and PSS summed over the `xlc score` process and
  all its descendants; `--engine ray` starts its own local Ray, whose raylet, GCS, workers and
  actors are in that tree. A peak shorter than the interval can be missed. RSS counts a page
  shared by several processes (libraries, Ray's object store in /dev/shm) once per process; PSS
  splits it between them, so the PSS sum is the closer figure for "memory the job holds".
Ray processes of this user that start during a run outside the tree (Ray's actor workers
are not children of the job) are counted in the sums too and listed (`outside_tree`): on a
machine where another Ray job starts at the same time, its processes would be counted as well.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

import polars as pl

from xlc import data, model, onnx

CACHE = Path(__file__).resolve().parent / ".cache" / "memory"
RESULTS = Path(__file__).resolve().parent / "results" / "score_memory"
TARGET = 1.3
"""Peak memory at the largest size may be at most this times the peak at the smallest."""
MEASURES = ("wait4_mib", "tree_rss_mib", "tree_pss_mib")
ENGINES = ("local", "ray")
RAY_PROGRAMS = ("raylet", "gcs_server")
"""With Python scripts under site-packages/ray/ and `ray::` workers: the processes a local Ray starts."""


def tiny_onnx() -> Path:
    target = CACHE / "tiny-onnx"
    if not (target / "model.onnx").is_file():
        encoder = model.build_tiny(CACHE / "tiny-encoder")
        classes = tuple(sorted(pl.read_parquet(data.demo_path())["label"].unique()))
        onnx.export(model.from_base(str(encoder), classes), target)
    return target


def pool(rows: int) -> Path:
    path = CACHE / f"pool-{rows}.parquet"
    if not path.is_file():
        texts = pl.read_parquet(data.demo_path()).select("text")
        texts.sample(rows, with_replacement=True, seed=rows).write_parquet(path)
    return path


def score_command(engine: str, model_dir: Path, source: Path) -> list[str]:
    """`xlc score` on `source`; local writes one Parquet file, ray a folder of parts."""
    out = CACHE / (f"{source.stem}.{engine}" + (".parquet" if engine == "local" else ""))
    return [sys.executable, "-m", "xlc.cli", "score", "--engine", engine, "--quiet", "--overwrite",
            "--model", str(model_dir), "--input", str(source), "--out", str(out), "--max-length", "128"]


def proc_kib(pid: int, file: str, key: str) -> int:
    """A `key:   N kB` line of /proc/PID/FILE; 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/{file}") as f:
            return next((int(line.split()[1]) for line in f if line.startswith(key)), 0)
    except (OSError, ValueError):
        return 0


def processes() -> dict[int, tuple[int, int, str]]:
    """Every process of this user: pid -> (parent pid, start time in clock ticks, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or entry.stat().st_uid != os.getuid():
                continue
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()  # fields after the name
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile
            continue
        found[int(entry.name)] = (int(stat[1]), int(stat[19]), cmdline)
    return found


def descendants(root: int, procs: dict[int, tuple[int, int, str]]) -> set[int]:
    """`root` and every process below it."""
    tree, todo = {root}, [root]
    while todo:
        parent = todo.pop()
        children = [pid for pid, (ppid, _, _) in procs.items() if ppid == parent]
        tree.update(children)
        todo += children
    return tree


def ray_outside(tree: set[int], since: int, procs: dict[int, tuple[int, int, str]]) -> set[int]:
    """Ray processes started at or after `since` (clock ticks) outside `tree`."""
    return {pid for pid, (_, started, cmd) in procs.items() if pid not in tree and started >= since and is_ray(cmd)}


def is_ray(cmdline: str) -> bool:
    words = cmdline.split()[:4]
    return (cmdline.startswith("ray::") or bool(words) and Path(words[0]).name in RAY_PROGRAMS
            or any("site-packages/ray/" in w and w.endswith(".py") for w in words))


def measure(command: list[str], interval: float) -> dict:
    """Run `command` to its end, sampling its process tree; the peaks in MiB and the seconds."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    peak = {"driver_sampled_mib": 0, "tree_rss_mib": 0, "tree_pss_mib": 0, "processes": 0}
    since, outside = None, set()
    while True:
        procs = processes()
        since = since or procs.get(child.pid, (0, 0, ""))[1]
        strays = ray_outside(descendants(child.pid, procs), since or 0, procs)
        tree = descendants(child.pid, procs) | strays
        outside |= {procs[p][2][:80] for p in strays}
        sample = {"driver_sampled_mib": proc_kib(child.pid, "status", "VmRSS:"),
                  "tree_rss_mib": sum(proc_kib(p, "status", "VmRSS:") for p in tree),
                  "tree_pss_mib": sum(proc_kib(p, "smaps_rollup", "Pss:") for p in tree),
                  "processes": len(tree)}
        peak = {k: max(v, sample[k]) for k, v in peak.items()}
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(interval)
    if status:
        raise SystemExit(f"failed ({status}): {' '.join(command)}")
    seconds = time.perf_counter() - start
    mib = {k: round(v / 1024, 1) for k, v in peak.items() if k.endswith("_mib")}
    return {"seconds": round(seconds, 1), "wait4_mib": round(usage.ru_maxrss / 1024, 1), **mib,
            "processes": peak["processes"], "outside_tree": sorted(outside)}


def ratios(runs: list[dict], engine: str) -> dict:
    """Each peak at the largest size over the same peak at the smallest; whether all are within TARGET."""
    mine = sorted((r for r in runs if r["engine"] == engine), key=lambda r: r["rows"])
    if len(mine) < 2:
        return {}
    ratio = {k: round(mine[-1][k] / mine[0][k], 2) for k in MEASURES}
    return {"rows": [mine[0]["rows"], mine[-1]["rows"]], **ratio, "holds": all(v <= TARGET for v in ratio.values())}


def versions() -> dict:
    names = ("xlc", "polars", "onnxruntime", "tokenizers", "ray")
    return {"python": platform.python_version(), **{n: version(n) for n in names}}


def markdown(result: dict) -> str:
    lines = [f"# `xlc score`: peak memory, {', '.join(result['engines'])}", "",
             "Commands (run from the repository root, one run at a time):", "",
             "```bash\n" + "\n".join(dict.fromkeys(f"{r['command']}   # {r['date']}" for r in result["runs"]))
             + "\n```", "",
             f"Machine: {result['machine']}. Versions: "
             + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".", "",
             f"Model: {result['model']}. `wait4`: ru_maxrss of the `xlc score` process (with Ray: the largest "
             f"single process of its tree). `tree RSS`/`tree PSS`: the summed RSS/PSS of `xlc score` and all "
             f"its descendants (Ray's raylet, GCS, workers), plus the Ray processes started during the run outside "
             f"that tree (the actors), sampled every {result['interval_s']} s; a "
             f"shorter peak can be missed, and the RSS sum counts shared pages (libraries, the object store) "
             f"once per process. Peaks in MiB.", "",
             "| engine | rows | load before | seconds | rows/s | wait4 | tree RSS | tree PSS | processes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        lines.append(f"| {r['engine']} | {r['rows']:,} | {r['load_average_before']:.1f} | {r['seconds']:.0f} | "
                     f"{r['rows_per_second']:,.0f} | {r['wait4_mib']:.0f} | {r['tree_rss_mib']:.0f} | "
                     f"{r['tree_pss_mib']:.0f} | {r['processes']} |")
    lines += ["", f"Ratio of the peaks, largest size / smallest (target: <= {TARGET}x for every measure):", "",
              "| engine | sizes | wait4 | tree RSS | tree PSS | target holds |", "|---|---|---:|---:|---:|---|"]
    for engine, ratio in result["ratios"].items():
        if ratio:
            lines.append(f"| {engine} | {ratio['rows'][1]:,} / {ratio['rows'][0]:,} | {ratio['wait4_mib']:.2f}x | "
                         f"{ratio['tree_rss_mib']:.2f}x | {ratio['tree_pss_mib']:.2f}x | "
                         f"{'yes' if ratio['holds'] else 'NO'} |")
    strays = sorted({s for r in result["runs"] for s in r["outside_tree"]})
    lines += ["", "Ray processes started during a run outside the job's process tree (counted in the sums): "
              + ("; ".join(f"`{s}`" for s in strays) if strays else "none") + "."]
    return "\n".join(lines) + "\n"


def saved(path: Path, result: dict, run: dict) -> dict:
    """`result` with `run` in place of the run of the same engine and size at `path`, written there
    as JSON and Markdown (so that each finished run is kept, even if a later one fails)."""
    earlier = json.loads(path.with_suffix(".json").read_text())["runs"] if path.with_suffix(".json").is_file() else []
    runs = [r for r in earlier if (r["engine"], r["rows"]) != (run["engine"], run["rows"])] + [run]
    runs.sort(key=lambda r: (ENGINES.index(r["engine"]), r["rows"]))
    engines = list(dict.fromkeys(r["engine"] for r in runs))
    result = {**result, "engines": engines, "runs": runs, "ratios": {e: ratios(runs, e) for e in engines}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--interval", type=float, default=0.5, help="Seconds between samples.")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="Writes RESULTS.json and RESULTS.md after each run, keeping earlier runs of other "
                             "engines and sizes.")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    model_dir = tiny_onnx()
    command = f"python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}".strip()
    result = {"engines": args.engines, "interval_s": args.interval,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                         f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB memory",
              "versions": versions(), "target": TARGET,
              "model": "tiny 2-layer encoder (hidden 32) with the real 250k-piece tokenizer, ONNX; "
                       "--max-length 128, default --chunk-size 20000", "runs": []}
    for engine in args.engines:
        for rows in args.rows:
            source = pool(rows)
            load = os.getloadavg()[0]
            run = {"engine": engine, "rows": rows, "command": command, "date": date.today().isoformat(),
                   "load_average_before": round(load, 2),
                   **measure(score_command(engine, model_dir, source), args.interval)}
            run["rows_per_second"] = round(rows / run["seconds"], 1)
            print(json.dumps(run), flush=True)
            result = saved(args.results, result, run)
    print(markdown(result))
    for out in CACHE.glob("pool-*.ray"):  # the scores themselves are not kept
        shutil.rmtree(out)
    for out in CACHE.glob("pool-*.local.parquet"):
        out.unlink()


if __name__ == "__main__":
    main()
