"""The xlc classifier as Transformers remote code: copied into every saved model folder.

xlc saves each PyTorch model with this file as `modeling_xlc.py` and an `auto_map` in its
config.json, so that the standard loaders build the same classifier outside xlc:

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
    pipeline("text-classification", model=folder, trust_remote_code=True)

This module imports only torch and transformers (never xlc), so that the copy runs anywhere.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class XlcForSequenceClassification(PreTrainedModel):
    """Encoder + mean pooling over real tokens + dropout + linear head."""

    config_class = PretrainedConfig
    base_model_prefix = "encoder"

    def __init__(self, config: PretrainedConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        self.encoder = encoder if encoder is not None else encoder_from_config(config)
        self.dropout = nn.Dropout(getattr(config, "hidden_dropout_prob", 0.1))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init() if encoder is None else self._init_weights(self.classifier)

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "classifier", None):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif hasattr(self, "encoder"):
            self.encoder._init_weights(module)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
        return self.classify(hidden, attention_mask, labels)

    def classify(self, hidden: torch.Tensor, attention_mask: torch.Tensor,
                 labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        """Mean-pool the encoder's last hidden states over real tokens, then the head."""
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def encoder_from_config(config: PretrainedConfig) -> PreTrainedModel:
    """The encoder of `config`, without a pooler where the architecture has one."""
    try:
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:  # encoders without a pooler take no such argument
        return AutoModel.from_config(config)
