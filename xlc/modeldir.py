"""What an xlc model folder holds besides weights: xlc.json and a fast tokenizer.

Kept free of torch and transformers so that scoring starts fast and small.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from xlc.errors import XlcError

META_FILE = "xlc.json"


def write_meta(path: Path, classes: Sequence[str], text_prefix: str) -> None:
    (path / META_FILE).write_text(json.dumps({"classes": list(classes), "text_prefix": text_prefix}, indent=2))


def read_meta(path: Path) -> dict:
    meta = path / META_FILE
    if not meta.is_file():
        raise XlcError(f"{path} holds no xlc model ({META_FILE} missing); pass a folder written by xlc")
    return json.loads(meta.read_text())


class FastTokenizer:
    """The folder's tokenizer.json through the `tokenizers` library (same ids as transformers)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        file = path / "tokenizer.json"
        if not file.is_file():
            raise XlcError(f"{file} not found; the model folder needs a fast tokenizer (tokenizer.json)")
        self.backend = Tokenizer.from_file(str(file))
        self.backend.no_padding()
        self.pad_token_id = self._pad_id(path)

    def _pad_id(self, path: Path) -> int:
        special = path / "special_tokens_map.json"
        token = json.loads(special.read_text()).get("pad_token") if special.is_file() else None
        if isinstance(token, dict):
            token = token.get("content")
        found = self.backend.token_to_id(token) if token else None
        return int(found) if found is not None else 0

    def encode(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Token ids with special tokens, truncated to `max_length`, unpadded."""
        self.backend.enable_truncation(max_length)
        return [e.ids for e in self.backend.encode_batch(list(texts))]
