"""A run's ONNX export of one round, as the loop does it: traced (round 0, and every round before) and
rewritten into the earlier round's graph (a later round, `xlc.onnx.rewrite`).

    python benchmarks/export_round.py [--model multilingual-e5-small] [--out DIR]

Exports round 0 in full, changes every weight but the word-embedding table a little (as a round of
training does), then times the later round's export both ways on the same weights: rewritten, and
traced as before (`rewrite` switched off). Prints the seconds, the load average before each, and
whether both ways wrote the same bytes. One measurement each: on a shared machine, read the load.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from xlc import model, onnx
from xlc.config import DEFAULTS


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def nudge(clf: model.Classifier, seed: int) -> None:
    table = model.table_name(clf.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in clf.model.named_parameters():
            if name != table:
                param.add_(torch.randn(param.shape, generator=generator) * 1e-3)


def timed(what: str, export) -> float:
    print(f"{what}: load average {load_average()}", flush=True)
    clock = time.perf_counter()
    export()
    seconds = time.perf_counter() - clock
    print(f"{what}: {seconds:.2f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULTS.model)
    parser.add_argument("--out", type=Path, default=None, help="scratch folder (default: a temp folder)")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="export-round-", dir=args.out))
    try:
        clf = model.from_base(args.model, tuple("abcdefg"))
        nudge(clf, 0)
        first, fast, full = out / "round-00", out / "round-01", out / "traced-01"
        timed("round 0, traced (and its weights map built)", lambda: onnx.export(clf, first, reuse=[]))
        if not (first / onnx.WEIGHTS_MAP).is_file():
            print("no weights map for this model: every round is traced")
            return
        nudge(clf, 1)
        after = timed("round 1, rewritten", lambda: onnx.export(clf, fast, reuse=[first]))
        with mock.patch.object(onnx, "rewrite", lambda *a, **k: False):
            before = timed("round 1, traced as before", lambda: onnx.export(clf, full, reuse=[first]))
        names = sorted(p.name for p in full.iterdir())
        same = all((fast / n).read_bytes() == (full / n).read_bytes() for n in names)
        print(f"{before / after:.1f}x faster; the same {len(names)} files, byte for byte: {same}")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
