"""What an xlc model folder holds besides weights: xlc.json and a fast tokenizer.

xlc.json holds the class names and how the model reads a text: the `text_prefix` put before
each text (e.g. "query: " for E5) and the `max_length` it was trained with, which scoring
uses when no max length is given (`inference.resolve_max_length`). A folder written before
xlc stored `max_length` has none; that is not an error.

The text prefix is also built into the folder's tokenizer.json (`prefix_built_in`), so that the
folder loaded without xlc (Transformers' `AutoTokenizer` with Optimum or a `pipeline`) reads texts
as xlc does; `prefix_in_tokenizer` in xlc.json says so. xlc itself takes it out again when it
reads the tokenizer (`take_out_prefix`) and puts the prefix before each text as it always has:
the same token ids for every text, and for folders written before xlc built it in.

Kept free of torch and transformers so that scoring starts fast and small.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xlc import files
from xlc.errors import XlcError
from xlc.inference import MIN_LENGTH

if TYPE_CHECKING:
    from tokenizers import Tokenizer

META_FILE = "xlc.json"
TOKENIZER_FILE = "tokenizer.json"
PREFIX_FLAG = "prefix_in_tokenizer"
"""The xlc.json key saying that tokenizer.json puts the text prefix before each text by itself."""


def write_meta(path: Path, classes: Sequence[str], text_prefix: str, max_length: int | None,
               prefix_in_tokenizer: bool = False) -> dict:
    """Write xlc.json and return what it holds; `max_length` None (a model never trained by xlc) is left out."""
    meta: dict[str, object] = {"classes": list(classes), "text_prefix": text_prefix,
                               PREFIX_FLAG: prefix_in_tokenizer}
    if max_length is not None:
        meta["max_length"] = max_length
    files.write_text(path / META_FILE, json.dumps(meta, indent=2))
    return meta


@contextmanager
def prefix_built_in(backend: Tokenizer, prefix: str) -> Iterator[None]:
    """`backend` (a `tokenizers.Tokenizer`) putting `prefix` before each text itself inside the block, as
    it was after: how the prefix is built into a saved tokenizer.json (`model.save_tokenizer`) without
    parsing the file back, which takes seconds for a 250k-piece vocabulary.

    The prefix goes first in the tokenizer's normalizer (a `Prepend`), so every later normalizer,
    the pre-tokenizer and truncation see exactly the string prefix + text. The one difference from
    putting it there yourself: the tokenizers library splits off special-token strings (`<s>`,
    `[SEP]`, ...) before it normalizes, and prepends to each part between them.
    """
    from tokenizers import normalizers

    before = backend.normalizer
    backend.normalizer = normalizers.Sequence([normalizers.Prepend(prefix), *([before] if before is not None else [])])
    try:
        yield
    finally:
        backend.normalizer = before


def built_in_prefix(meta: dict) -> str:
    """The text prefix that the folder's tokenizer.json puts before each text itself ("" for none)."""
    return meta.get("text_prefix", "") if meta.get(PREFIX_FLAG) else ""


def take_out_prefix(backend: Tokenizer, prefix: str, path: Path) -> None:
    """Undo `prefix_built_in` on a loaded `tokenizers.Tokenizer`: its normalizer as it was before."""
    from tokenizers import normalizers

    found = backend.normalizer
    parts = list(found) if isinstance(found, normalizers.Sequence) else []
    if not (parts and isinstance(parts[0], normalizers.Prepend) and parts[0].prepend == prefix):
        raise XlcError(f"{path / TOKENIZER_FILE}: {META_FILE} says the text prefix {prefix!r} is built into it, but "
                       f"its normalizer does not start with it; the model folder is damaged: export it again")
    rest = parts[1:]
    backend.normalizer = None if not rest else rest[0] if len(rest) == 1 else normalizers.Sequence(rest)


def read_meta(path: Path) -> dict:
    """The folder's xlc.json, checked: at least two distinct class names, a text prefix, a max length if any."""
    meta = path / META_FILE
    if not meta.is_file():
        raise XlcError(f"{path} holds no xlc model ({META_FILE} missing); pass a folder written by xlc")
    try:
        found = json.loads(meta.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise XlcError(f"{meta}: not valid JSON ({exc}); the model folder is damaged: export it again") from None
    classes = found.get("classes") if isinstance(found, dict) else None
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
        raise XlcError(f"{meta}: 'classes' must list at least two class names; the model folder is damaged: "
                       f"export it again")
    if len(set(classes)) != len(classes):
        twice = sorted({c for c in classes if classes.count(c) > 1})
        raise XlcError(f"{meta}: class name(s) {twice} occur twice; the model folder is damaged: export it again")
    if not isinstance(found.get("text_prefix", ""), str):
        raise XlcError(f"{meta}: 'text_prefix' must be a string; the model folder is damaged: export it again")
    if not isinstance(found.get(PREFIX_FLAG, False), bool):
        raise XlcError(f"{meta}: {PREFIX_FLAG!r} must be true or false; the model folder is damaged: export it again")
    length = found.get("max_length")
    if length is not None and not (isinstance(length, int) and not isinstance(length, bool) and length >= MIN_LENGTH):
        raise XlcError(f"{meta}: 'max_length' must be a whole number >= {MIN_LENGTH}, got {length!r}; the model "
                       f"folder is damaged: export it again")
    return found


def max_positions(path: Path) -> int | None:
    """The most tokens the model in `path` reads (from its config.json), or None when it does not say."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    limit = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 2:
        return None
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):  # positions start after padding
        limit -= int(config.get("pad_token_id") or 1) + 1
    return limit


class FastTokenizer:
    """The folder's tokenizer.json through the `tokenizers` library (same ids as transformers).

    `built_in`: the text prefix built into it (`built_in_prefix`), taken out: the caller puts it before each text.
    """

    def __init__(self, path: Path, built_in: str = "") -> None:
        file = path / TOKENIZER_FILE
        if not file.is_file():
            raise XlcError(f"{file} not found; the model folder needs a fast tokenizer (tokenizer.json)")
        key = f"{content_key(path, (TOKENIZER_FILE,))}:{built_in}"
        self.backend, self.lock = shared("tokenizers", key, lambda: _parse(file, built_in, path))
        self.pad_token_id = self._pad_id(path)

    def _pad_id(self, path: Path) -> int:
        special = path / "special_tokens_map.json"
        try:
            token = json.loads(special.read_text(encoding="utf-8")).get("pad_token") if special.is_file() else None
        except (ValueError, UnicodeDecodeError, AttributeError) as exc:
            raise XlcError(f"{special}: not valid ({exc}); the model folder is damaged: export it again") from None
        if isinstance(token, dict):
            token = token.get("content")
        found = self.backend.token_to_id(token) if token else None
        return int(found) if found is not None else 0

    def encode(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Token ids with special tokens, truncated to `max_length`, unpadded."""
        with self.lock:  # the parsed tokenizer is shared (`shared`); truncation is its state
            self.backend.enable_truncation(max_length)
            return [e.ids for e in self.backend.encode_batch(list(texts))]


def content_key(folder: Path, names: Sequence[str]) -> str:
    """A digest of the named files of `folder` that exist: equal for byte-identical copies (every
    round's model folder holds the same tokenizer), different when any byte differs."""
    digest = hashlib.blake2b(digest_size=16)
    for name in names:
        file = folder / name
        if file.is_file():
            digest.update(f"{name}\0{file.stat().st_size}\0".encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


_SHARED: OrderedDict[tuple[str, str], Any] = OrderedDict()
_SHARED_LOCK = threading.Lock()


def shared(kind: str, key: str, load: Callable[[], Any]) -> Any:
    """`load()` once per process for each `kind` and content `key`, the 4 last used kept: every
    round's folder holds the same tokenizer, and parsing a 250k-piece vocabulary takes seconds
    where hashing its files (`content_key`) takes milliseconds. Callers share what comes back."""
    with _SHARED_LOCK:
        if (kind, key) in _SHARED:
            _SHARED.move_to_end((kind, key))
            return _SHARED[kind, key]
    value = load()
    with _SHARED_LOCK:
        _SHARED[kind, key] = value
        while len(_SHARED) > 4:
            _SHARED.popitem(last=False)
    return value


def _parse(file: Path, built_in: str, path: Path) -> tuple[Any, threading.Lock]:
    """tokenizer.json through the tokenizers library, its `built_in` prefix taken out, with the lock
    that guards its settings."""
    from tokenizers import Tokenizer

    try:
        backend = Tokenizer.from_file(str(file))
    except Exception as exc:  # the tokenizers library raises its own, untyped errors
        raise XlcError(f"{file}: not a tokenizer the tokenizers library can read ({exc}); the model "
                       f"folder is damaged: export it again") from None
    if built_in:
        take_out_prefix(backend, built_in, path)
    backend.no_padding()
    return backend, threading.Lock()
