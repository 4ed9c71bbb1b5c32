"""Building blocks shared by the encoders and the fusion model: LoRA through ``peft`` on
copies of backbone modules whose frozen weights stay shared with the backbone."""

from __future__ import annotations

import copy

from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from tap_engine.models.backbones import LoraShape


def shared_copy(module: nn.Module) -> nn.Module:
    """A structural copy of ``module`` whose parameters and buffers are the same tensors.

    TAP initialises many blocks and experts from the same backbone layers; their frozen
    weights exist once in memory however many copies (and clients) there are.
    """
    memo = {id(t): t for t in [*module.parameters(), *module.buffers()]}
    return copy.deepcopy(module, memo)


def add_lora(module: nn.Module, targets: list[str], shape: LoraShape) -> nn.Module:
    """Inject LoRA adapters (``peft``) into ``module``'s ``targets``; all else stays frozen."""
    config = LoraConfig(
        r=shape.r, lora_alpha=shape.alpha, lora_dropout=shape.dropout, target_modules=targets
    )
    module.requires_grad_(False)
    return inject_adapter_in_model(config, module)


class TokenProjection(nn.Module):
    """``Linear(hidden_in, D) + LayerNorm(D)``: every encoder ends in it."""

    def __init__(self, hidden_in: int, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_in, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, tokens):
        return self.norm(self.linear(tokens))
