"""How a trained model scores texts: the defaults, their limits and the one check of them.

Every scoring entry point (`xlc.load` and `xlc.score`, `xlc score`, `xlc evaluate`, the Ray
engine, the self-training loop) takes its defaults from here and checks the options it is
given with `check`, before any work. Kept free of heavy imports: the CLI reads it to draw
its help.

The max length is the model's own: the `--max-length` it was trained with, which its
xlc.json records (`modeldir.write_meta`). An explicit max length always wins; a model folder
written before xlc recorded it is scored at `FALLBACK_MAX_LENGTH`.
"""

from __future__ import annotations

from xlc.errors import XlcError

BATCH_SIZE = 64
"""Texts per ONNX Runtime call."""
CHUNK_SIZE = 20_000
"""Rows read, scored and written at a time by `xlc score` (and per Ray actor call)."""
FALLBACK_MAX_LENGTH = 128
"""Tokens per text for a model folder that does not record its training length."""
MIN_LENGTH = 2
"""The shortest max length: a text is at least its special tokens."""
MAX_BATCH = 1_000_000
MAX_CHUNK = 10_000_000
"""The most rows per part of `xlc score` (a part is held in memory)."""
MAX_THREADS = 1024
"""The most --threads accepted anywhere; ONNX Runtime also uses at most the machine's cores."""

MAX_LENGTH_HELP = (f"the model's training length ({FALLBACK_MAX_LENGTH} for a model exported before "
                   f"xlc stored it)")
"""What the default max length is, in words, for help texts."""

LIMITS: dict[str, tuple[int, int | None]] = {
    "batch_size": (1, MAX_BATCH),
    "score_batch_size": (1, MAX_BATCH),
    "chunk_size": (1, MAX_CHUNK),
    "threads": (1, MAX_THREADS),
    "max_length": (MIN_LENGTH, None),
}
"""Each option's smallest and largest value (None: no upper bound here; the model sets one)."""


def resolve_max_length(given: int | None, trained: int | None) -> int:
    """The max length to score with: the one `given`, else the model's training length, else the fallback."""
    if given is not None:
        return given
    return trained if trained is not None else FALLBACK_MAX_LENGTH


def check(where: str = "", flags: bool = True, **values: object) -> None:
    """Refuse an option outside `LIMITS` with a one-line XlcError; None means "not given".

    `flags`: name options as the command line spells them (--batch-size), else as keyword
    arguments (batch_size); `where` starts the message (e.g. "xlc.load").
    """
    for name, value in values.items():
        if value is None:
            continue
        low, high = LIMITS[name]
        number = value if isinstance(value, int) and not isinstance(value, bool) else None
        if number is not None and number >= low and (high is None or number <= high):
            continue
        if flags:
            label, rule = "--" + name.replace("_", "-"), f"between {low} and {high}" if high else f">= {low}"
        else:
            label, rule = name, f"a whole number >= {low}" if number is None or number < low else f"<= {high}"
        raise XlcError(f"{where + ': ' if where else ''}{label} must be {rule}, got {value!r}")
