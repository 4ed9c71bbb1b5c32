"""Modality encoders (TAP_SPEC section 2.1): frozen backbone parts with LoRA, then a
trainable ``Linear(hidden, D) + LayerNorm(D)``. Each returns tokens ``[B, S, D]`` and a
mask ``[B, S]`` (True for real tokens)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tap_engine.models.backbones import Backbone
from tap_engine.models.layers import TokenProjection, add_lora

Encoded = tuple[torch.Tensor, torch.Tensor]


class ImageAdaptor(nn.Module):
    """Lifts 64x64 inputs to the backbone's resolution with a learned filter (TAP_SPEC 2.1):
    x2 bilinear upsample, 3x3 conv, GELU, resize to ``size``, 1x1 conv."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.conv = nn.Conv2d(3, 3, kernel_size=3, padding=1)
        self.out = nn.Conv2d(3, 3, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.gelu(self.conv(x))
        x = F.interpolate(x, size=(self.size,) * 2, mode="bilinear", align_corners=False)
        return self.out(x)


class FlavaImageEncoder(nn.Module):
    """64x64 image -> small trainable adaptor -> frozen FLAVA image model with LoRA on q, v."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.adaptor = ImageAdaptor(backbone.adaptor_size)
        # A size other than the pretraining one interpolates the position embeddings.
        self.interpolate = backbone.adaptor_size != backbone.image_size
        self.model = add_lora(
            backbone.model.image_model, ["query", "value"], backbone.defaults.encoder_lora
        )
        self.proj = TokenProjection(backbone.model.config.image_config.hidden_size, backbone.hidden)

    def forward(self, images: torch.Tensor, input_ids=None, attention_mask=None) -> Encoded:
        pixels = self.adaptor(images)
        tokens = self.model(
            pixel_values=pixels, interpolate_pos_encoding=self.interpolate
        ).last_hidden_state
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return self.proj(tokens), mask


class FlavaTextEncoder(nn.Module):
    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.model = add_lora(
            backbone.model.text_model, ["query", "value"], backbone.defaults.encoder_lora
        )
        self.proj = TokenProjection(backbone.model.config.text_config.hidden_size, backbone.hidden)

    def forward(self, images=None, input_ids=None, attention_mask=None) -> Encoded:
        tokens = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.proj(tokens), attention_mask.bool()


class ViltImageEncoder(nn.Module):
    """64x64 image -> the same adaptor as FLAVA's, to the backbone's image size (224: 49
    patches of 32, as in the paper's code) -> frozen ViLT patch embedding with LoRA on its
    projection, CLS token and position embeddings."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.adaptor = ImageAdaptor(backbone.adaptor_size)
        embeddings = backbone.model.embeddings
        self.patch = add_lora(
            embeddings.patch_embeddings, ["projection"], backbone.defaults.encoder_lora
        )
        self.cls_token = embeddings.cls_token  # frozen, shared with the backbone
        self.position_embeddings = embeddings.position_embeddings
        self.token_type = embeddings.token_type_embeddings
        self.proj = TokenProjection(backbone.hidden, backbone.hidden)

    def forward(self, images: torch.Tensor, input_ids=None, attention_mask=None) -> Encoded:
        patches = self.patch.projection(self.adaptor(images))  # [B, D, h, w]
        b, d, h, w = patches.shape
        positions = self.position_embeddings  # [1, 1 + n*n, D], n = pretraining grid side
        n = int((positions.shape[1] - 1) ** 0.5)
        grid = positions[:, 1:].transpose(1, 2).reshape(1, d, n, n)
        if (h, w) != (n, n):
            grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        patch_tokens = (patches + grid).flatten(2).transpose(1, 2)  # [B, h*w, D]
        cls = (self.cls_token + positions[:, :1]).expand(b, -1, -1)
        tokens = torch.cat([cls, patch_tokens], dim=1)
        tokens = tokens + self.token_type(torch.ones_like(tokens[:, :, 0], dtype=torch.long))
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return self.proj(tokens), mask


class ViltTextEncoder(nn.Module):
    """ViLT's frozen text embeddings (no LoRA, as in TAP_SPEC), then the projection."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        embeddings = backbone.model.embeddings
        self.text = embeddings.text_embeddings
        self.token_type = embeddings.token_type_embeddings
        self.proj = TokenProjection(backbone.hidden, backbone.hidden)

    def forward(self, images=None, input_ids=None, attention_mask=None) -> Encoded:
        types = torch.zeros_like(input_ids)
        tokens = self.text(input_ids=input_ids, token_type_ids=types) + self.token_type(types)
        return self.proj(tokens), attention_mask.bool()


def build_encoder(backbone: Backbone, modality: str) -> nn.Module:
    table = {
        ("flava", "image"): FlavaImageEncoder,
        ("flava", "text"): FlavaTextEncoder,
        ("vilt", "image"): ViltImageEncoder,
        ("vilt", "text"): ViltTextEncoder,
    }
    return table[(backbone.kind, modality)](backbone)
