"""Task heads (TAP_SPEC section 2.3): classification, image generation, text generation."""

from __future__ import annotations

import torch
from torch import nn


def classification_head(kind: str, hidden: int, num_classes: int) -> nn.Module:
    if kind == "flava":
        return nn.Sequential(
            nn.Linear(hidden, hidden // 2),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(hidden // 2, num_classes),
        )
    return nn.Sequential(
        nn.Linear(hidden, 4 * hidden),
        nn.LayerNorm(4 * hidden),
        nn.GELU(),
        nn.Dropout(0.1),
        nn.Linear(4 * hidden, hidden),
        nn.GELU(),
        nn.Linear(hidden, num_classes),
    )


class ImageGenerationHead(nn.Module):
    """Feature ``[B, D]`` -> reconstruction of the normalised input ``[B, 3, 64, 64]``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, 64 * 8 * 8)
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),  # 16x16
            nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),  # 32x32
            nn.ReLU(),
            nn.ConvTranspose2d(16, 3, 4, stride=2, padding=1),  # 64x64
        )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(feature).view(-1, 64, 8, 8))


class TextGenerationHead(nn.Module):
    """A one-layer GPT-2 block over learned position embeddings that cross-attends to the
    feature and predicts every target position in parallel: ``[B, D]`` -> ``[B, T, V]``."""

    def __init__(self, hidden: int, vocab_size: int, max_length: int) -> None:
        super().__init__()
        from transformers import GPT2Config
        from transformers.models.gpt2.modeling_gpt2 import GPT2Block

        config = GPT2Config(
            n_embd=hidden,
            n_head=4,
            n_inner=2 * hidden,
            n_positions=max_length,
            add_cross_attention=True,
            attn_implementation="eager",
        )
        self.positions = nn.Embedding(max_length, hidden)
        self.block = GPT2Block(config, layer_idx=0)
        self.norm = nn.LayerNorm(hidden)
        self.lm = nn.Linear(hidden, vocab_size)

    @property
    def max_length(self) -> int:
        return self.positions.num_embeddings

    def hidden(self, feature: torch.Tensor, length: int) -> torch.Tensor:
        """The normalised states ``[B, length, D]`` the vocabulary projection reads. The
        block's self-attention is causal, so position t does not depend on ``length``."""
        positions = torch.arange(length, device=feature.device)
        hidden = self.positions(positions).unsqueeze(0).expand(feature.shape[0], -1, -1)
        out = self.block(hidden, encoder_hidden_states=feature.unsqueeze(1))
        out = out[0] if isinstance(out, tuple) else out
        return self.norm(out)

    def forward(self, feature: torch.Tensor, length: int) -> torch.Tensor:
        return self.lm(self.hidden(feature, length))
