"""The real default encoder, rebuilt from the PyPI packages (slow: ~470 MB in the cache)."""

from __future__ import annotations

import pytest
import torch

from xlc import default_model
from xlc.model import from_base


@pytest.mark.slow
def test_default_model_embeds_translations_closer_than_unrelated_sentences():
    clf = from_base(default_model.NAME, ("a", "b"))
    texts = [
        "The hotel room was clean and the staff were friendly.",
        "Das Hotelzimmer war sauber und das Personal war freundlich.",
        "酒店房间很干净，员工很友好。",
        "The stock market fell sharply after the central bank raised interest rates.",
        "Die Mannschaft gewann das Finale mit zwei Toren in der Verlängerung.",
    ]
    batch = clf.tokenizer([clf.text_prefix + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = clf.model.encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    sim = emb @ emb.T
    pairs = [sim[0, 1], sim[0, 2], sim[1, 2]]
    unrelated = [sim[i, j] for i in range(3) for j in (3, 4)]
    assert min(pairs) > max(unrelated) + 0.05
    assert min(pairs) > 0.85
    assert sum(p.numel() for p in clf.model.encoder.parameters()) == pytest.approx(117.65e6, rel=0.01)
