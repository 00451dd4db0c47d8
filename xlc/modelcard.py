"""The README.md model card of every model folder xlc saves: `best/`, `final/` and `xlc export`.

`render` is a pure function of the folder's xlc.json and the run's report.json (when the model
comes from a run): what the model is, what it was trained on, how well it did, how to load it.
`write` puts it in a folder without ever replacing a README.md that xlc did not write.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xlc import files
from xlc.modeldir import PREFIX_FLAG

log = logging.getLogger(__name__)

CARD_FILE = "README.md"
MARK = "<!-- model card written by xlc; xlc rewrites this file -->"
"""The first line of every card: a README.md without it is the user's and is never replaced."""
"""Encoder types whose AutoModel takes `add_pooling_layer` (as `model._pooler_kwargs`)."""


def averaged(report: Mapping[str, Any] | None) -> dict | None:
    """report.json's "delivered" when `best/` holds the average of rounds' weights (--select-round average):
    the rule, the rounds averaged and the average's dev and test metrics; else None (`best/` holds a round)."""
    found = (report or {}).get("delivered")
    return dict(found) if isinstance(found, Mapping) and found.get("rule") == "average" else None


def rounds_text(rounds: Sequence[int]) -> str:
    """Rounds in words: "round 0", "rounds 1-3"."""
    return f"round {rounds[0]}" if len(rounds) == 1 else f"rounds {rounds[0]}-{rounds[-1]}"


def render(meta: Mapping[str, Any], report: Mapping[str, Any] | None = None, round_number: int | None = None,
           *, weights: bool = True, average: bool = False) -> str:
    """The card, in Markdown.

    `meta`: the folder's xlc.json; `report`: the run's report.json, or None for a model whose run
    is unknown; `round_number`: the round whose model the folder holds; `weights`: the folder holds
    the PyTorch weights (best/, final/) besides model.onnx, else ONNX only (`xlc export`);
    `average`: the folder holds the average of the rounds' weights that the report's "delivered"
    names (`averaged`), the last of them `round_number`.
    """
    classes = list(meta["classes"])
    prefix, max_length = meta.get("text_prefix", ""), meta.get("max_length")
    config = dict((report or {}).get("config") or {})
    rounds = list((report or {}).get("rounds") or [])
    record = rounds[round_number] if round_number is not None and 0 <= round_number < len(rounds) else None
    mean = averaged(report) if average else None
    facts = dict((report or {}).get("data") or {})
    lines = [MARK, "", "# xlc text classifier", "",
             "A text classifier trained by xlc (cross-lingual self-training of text classifiers): "
             "fine-tuned on labeled (usually English) texts, then on its own most trusted pseudo-labels of "
             "unlabeled texts in the target language(s).", "", "## Model", "",
             f"- Base model: {_code(config['model']) if config.get('model') else 'unknown (no run report)'}",
             f"- Text prefix: {_code(prefix) if prefix else 'none'} (put before every text)",
             f"- Max length: {max_length} tokens (trained with; xlc scores at it)" if max_length is not None
             else "- Max length: not recorded (xlc scores at 128 tokens)",
             f"- Classes ({len(classes)}): " + ", ".join(_code(c) for c in classes)]
    languages = facts.get("languages") or {}
    if languages:
        lines.append("- Languages: " + "; ".join(f"{role} {', '.join(langs) or 'unknown'}"
                                                  for role, langs in languages.items()))
    lines += ["", "## Training", ""]
    if report is None:
        lines.append("Unknown: this folder was exported from a model whose run report was not found.")
    else:
        first = rounds[0] if rounds else {}
        if first:
            lines.append(f"- Labeled training texts: {first['labeled']}")
        if record is not None and first:
            whose = "its last averaged round" if mean is not None else "this model"
            lines.append(f"- Pseudo-labels {whose} was trained on: {record['labeled'] - first['labeled']} "
                         f"(taken from {first['pool']} unlabeled texts)")
        sizes = facts.get("sizes") or {}
        if sizes:
            lines.append("- Data sizes: " + ", ".join(f"{role} {n}" for role, n in sizes.items()))
        options = config.get("selector_options") or {}
        lines.append(f"- Selector: {_code(config.get('selector', '?'))}"
                     + (" with " + ", ".join(f"{k}={v!r}" for k, v in options.items()) if options else ""))
        if config.get("student_noise"):  # an older run's config has none: it trained without
            lines.append(f"- Student noise: each pseudo-labeled text hid {config['student_noise']:.0%} of its "
                         f"tokens while it trained (`--student-noise`)")
        if mean is not None:
            lines.append(f"- Weights: the average of the weights of {rounds_text(mean['rounds'])} of rounds "
                         f"0-{len(rounds) - 1} (`--select-round average`)")
        elif record is not None:
            which = ("the best on dev" if round_number == report.get("best_round") else "")
            last = "the last" if round_number == len(rounds) - 1 else ""
            role = " and ".join(w for w in (which, last) if w)
            lines.append(f"- Round: {round_number} of rounds 0-{len(rounds) - 1}" + (f" ({role})" if role else ""))
        if report.get("stop_reason"):
            lines.append(f"- The run stopped: {report['stop_reason']}")
        settings = ", ".join(f"{k}={config[k]!r}" for k in ("epochs", "batch_size", "lr", "seed") if k in config)
        if settings:
            lines.append(f"- Settings: {settings} (all of them: the run's config.toml)")
    lines += ["", "## Metrics", ""]
    shown = mean if mean is not None else record
    lines += _metrics(shown) if shown is not None else ["Unknown: no run report for this model."]
    lines += ["", "## How to load", ""] + _loading(prefix, max_length, weights, bool(meta.get(PREFIX_FLAG)))
    return "\n".join(lines) + "\n"


def _code(value: object) -> str:
    return f"`{value}`"


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def _metrics(record: Mapping[str, Any]) -> list[str]:
    """A table of accuracy and macro-F1 on dev and test, overall and per language when known."""
    rows = []
    for split in ("dev", "test"):
        result = record.get(split) or {}
        if not result:
            continue
        rows.append(f"| {split} | all | {result.get('n', '-')} | {_fmt(result.get('accuracy'))} | "
                    f"{_fmt(result.get('macro_f1'))} |")
        for lang, per in sorted((result.get("per_lang") or {}).items()):
            rows.append(f"| {split} | {lang} | {per.get('n', '-')} | {_fmt(per.get('accuracy'))} | "
                        f"{_fmt(per.get('macro_f1'))} |")
    if not rows:
        return ["No dev or test set was scored."]
    return ["Macro-F1 averages over the classes present in gold or predictions.", "",
            "| split | language | texts | accuracy | macro-F1 |", "|---|---|---|---|---|", *rows]


def _loading(prefix: str, max_length: int | None, weights: bool, built_in: bool) -> list[str]:
    length = max_length or 128
    yourself = bool(prefix) and not built_in  # a folder from before xlc built the prefix into tokenizer.json
    texts = f'["{prefix}Tolles Hotel!"]' if yourself else '["Tolles Hotel!"]'
    how = (f"; put the prefix {_code(prefix)} before each text yourself" if yourself
           else f"; the tokenizer puts the prefix {_code(prefix)} before each text itself" if prefix else "")
    lines = [
        "With xlc (ONNX Runtime, no torch needed; the text prefix and max length are applied for you):", "",
        "```python", "import xlc", 'clf = xlc.load("THIS_FOLDER")',
        'clf.classes_, clf.predict(["Tolles Hotel!"]), clf.predict_proba(["Tolles Hotel!"])',
        'xlc.score("THIS_FOLDER", ["Tolles Hotel!"])  # a Polars frame: label, confidence, probs', "```", "",
        "`model.onnx` with Optimum and a Transformers pipeline (the same probabilities as xlc" + how + "):", "",
        "```python",
        "from optimum.onnxruntime import ORTModelForSequenceClassification",
        "from transformers import AutoTokenizer, pipeline",
        'model = ORTModelForSequenceClassification.from_pretrained("THIS_FOLDER")',
        'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")',
        'classify = pipeline("text-classification", model=model, tokenizer=tokenizer)',
        f"classify({texts}, truncation=True, max_length={length}, top_k=None)", "```", ""]
    if not weights:
        return lines + ["This folder holds the ONNX model only; the PyTorch weights are in the run's `best/` "
                        "or `final/` folder."]
    return lines + [
        "The PyTorch weights (`*.safetensors`) load with Transformers' own Auto classes: the folder "
        "carries the model's code (`modeling_xlc.py`: the encoder, mean pooling over real tokens and a "
        "linear head), which Transformers runs when you pass `trust_remote_code=True`" + how + ":", "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline",
        'model = AutoModelForSequenceClassification.from_pretrained("THIS_FOLDER", trust_remote_code=True)',
        'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")',
        'classify = pipeline("text-classification", model=model, tokenizer=tokenizer)',
        f"classify({texts}, truncation=True, max_length={length}, top_k=None)",
        "```"]


def for_source(source: Path, meta: Mapping[str, Any], *, weights: bool) -> str:
    """The card of a model made from `source`: with its run when `source` is a run's best/ or final/."""
    report, round_number, best = None, None, Path(source).name == "best"
    path = Path(source) / ".." / "report.json"
    if Path(source).name in ("best", "final") and path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
            round_number = found["best_round"] if best else len(found["rounds"]) - 1
            report = found
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            log.warning("%s: not a readable run report; the model card leaves out the run", path)
    return render(meta, report, round_number, weights=weights, average=best and averaged(report) is not None)


def write(folder: Path, text: str) -> None:
    """Write `folder/README.md` atomically, unless a README.md that xlc did not write is there."""
    path = Path(folder) / CARD_FILE
    if path.is_file():
        try:
            ours = path.read_text(encoding="utf-8").startswith(MARK)
        except (OSError, UnicodeDecodeError):
            ours = False
        if not ours:
            log.warning("%s: not written by xlc; the model card is not written there", path)
            return
    files.write_text(path, text)
