"""The server model: every component any client needs, built once per process.

Parameters are grouped into named components (``encoders.image``, ``trunk``,
``heads.<task>``). A client's sub-model is the set of components its tasks use; clients
never hold the whole model. Training a client swaps its trainable state into this one
module instead of building a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tap_engine.config import RunConfig, TaskSpec


@dataclass(frozen=True)
class TaskHeadSpec:
    task: str
    family: str
    num_classes: int | None


class ConvImageEncoder(nn.Module):
    """``[B, 3, 64, 64]`` -> tokens ``[B, 16, D]`` (a 4x4 grid)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=4, stride=4),  # 16x16
            nn.GELU(),
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1),  # 8x8
            nn.GELU(),
            nn.Conv2d(32, hidden, kernel_size=3, stride=2, padding=1),  # 4x4
        )
        self.proj = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.conv(images).flatten(2).transpose(1, 2)  # [B, 16, D]
        return self.norm(self.proj(tokens))


class Trunk(nn.Module):
    """Shared residual MLP over tokens, mean-pooled to one feature per sample."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden)
        )
        self.norm = nn.LayerNorm(hidden)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(tokens + self.mlp(tokens)).mean(dim=1)  # [B, D]


def classification_head(hidden: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(hidden, hidden // 2),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(hidden // 2, num_classes),
    )


class ImageGenerationHead(nn.Module):
    """Feature ``[B, D]`` -> reconstructed normalised image ``[B, 3, 64, 64]``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, 64 * 8 * 8)
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),  # 16x16
            nn.GELU(),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),  # 32x32
            nn.GELU(),
            nn.ConvTranspose2d(16, 3, 4, stride=2, padding=1),  # 64x64
        )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(feature).view(-1, 64, 8, 8))


class ServerModel(nn.Module):
    def __init__(self, hidden: int, heads: list[TaskHeadSpec]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({"image": ConvImageEncoder(hidden)})
        self.trunk = Trunk(hidden)
        self.heads = nn.ModuleDict()
        for head in heads:
            if head.family == "image_classification":
                assert head.num_classes is not None
                self.heads[head.task] = classification_head(hidden, head.num_classes)
            elif head.family == "image_generation":
                self.heads[head.task] = ImageGenerationHead(hidden)
            else:
                raise ValueError(
                    f"the conv-tiny backbone cannot serve {head.family!r} ({head.task})"
                )

    def forward(self, task: str, images: torch.Tensor) -> torch.Tensor:
        return self.heads[task](self.trunk(self.encoders["image"](images)))


def task_components(task: TaskSpec) -> list[str]:
    """Component prefixes (of parameter names) that one task uses."""
    return [*(f"encoders.{m}" for m in task.modalities), "trunk", f"heads.{task.task}"]


def build_server_model(config: RunConfig, heads: list[TaskHeadSpec]) -> ServerModel:
    if config.backbone.name != "conv-tiny":
        raise ValueError(
            f"backbone.name: unknown backbone {config.backbone.name!r} (known: conv-tiny)"
        )
    return ServerModel(config.backbone.hidden_size, heads)


State = dict[str, torch.Tensor]


def component_of(name: str, components: list[str]) -> str | None:
    return next((c for c in components if name == c or name.startswith(c + ".")), None)


def sub_state(state: State, components: list[str]) -> State:
    """The tensors of ``state`` that belong to ``components`` (cloned: callers own them)."""
    return {k: v.detach().clone() for k, v in state.items() if component_of(k, components)}


def trainable_state(model: nn.Module) -> State:
    return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}


def load_sub_state(model: nn.Module, state: State, components: list[str]) -> None:
    """Load exactly the parameters of ``components``; a missing or extra tensor is an error."""
    params = dict(model.named_parameters())
    expected = {k for k in params if component_of(k, components)}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise KeyError(f"sub-model state mismatch: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v)
