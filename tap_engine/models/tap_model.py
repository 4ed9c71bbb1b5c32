"""The server model: every component any client needs (the union over clients), built once
per process around one frozen backbone. Clients never hold it whole: a client's sub-model
is the set of components its tasks use, swapped in as trainable state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from tap_engine.models.backbones import Backbone
from tap_engine.models.encoders import build_encoder
from tap_engine.models.fusion import (
    FROM_SHARED_PROJ,
    SHARED,
    Block,
    ExpertFFN,
    masked_mean,
    path_keys,
    route,
)
from tap_engine.models.heads import ImageGenerationHead, TextGenerationHead, classification_head

if TYPE_CHECKING:
    from tap_engine.data import Batch


@dataclass(frozen=True)
class TaskInfo:
    """What the model needs to know of a task."""

    name: str
    family: str
    modalities: tuple[str, ...]
    domains: tuple[str, ...]
    num_classes: int | None = None
    head: str = ""  # the head it trains, shared by tasks that name the same one; "": its name

    @property
    def head_name(self) -> str:
        return self.head or self.name


@dataclass
class ModelOutput:
    prediction: torch.Tensor  # logits [B, C], image [B, 3, 64, 64] or logits [B, T, V]
    mote_modality_task: dict[str, torch.Tensor]  # per modality: pooled MoTE m->f output [B, D]


class TapModel(nn.Module):
    def __init__(self, backbone: Backbone, tasks: list[TaskInfo], max_target_length: int):
        super().__init__()
        hidden, depth = backbone.hidden, backbone.defaults.block_layers
        self.depth = depth
        self.domains = sorted({d for t in tasks for d in t.domains})
        mote_domains: dict[str, set[str]] = {}
        mome_domains: dict[str, set[str]] = {}
        mote_experts: set[tuple[str, str]] = set()
        mome_experts: set[tuple[str, str]] = set()
        for task in tasks:
            for modality in task.modalities:
                for mote, mome in path_keys(modality, task.family).values():
                    mote_domains.setdefault(mote[0], set()).update(task.domains)
                    mome_domains.setdefault(mome[0], set()).update(task.domains)
                    mote_experts.add(mote[1:])
                    mome_experts.add(mome[1:])

        layers = list(backbone.fusion_layers)
        if len(layers) < 2 * depth:
            raise ValueError(f"backbone has {len(layers)} fusion layers; TAP needs {2 * depth}")
        heads, lora = backbone.num_heads, backbone.defaults.block_lora
        modalities = sorted({m for t in tasks for m in t.modalities})
        self.encoders = nn.ModuleDict({m: build_encoder(backbone, m) for m in modalities})
        self.shared_proj = nn.Linear(hidden, hidden)
        self.mote_blocks = nn.ModuleDict(
            {b: Block(layers[:depth], sorted(d), heads, lora) for b, d in mote_domains.items()}
        )
        self.mome_blocks = nn.ModuleDict(
            {
                b: Block(layers[depth : 2 * depth], sorted(d), heads, lora)
                for b, d in mome_domains.items()
            }
        )
        expert_lora = backbone.defaults.expert_lora
        self.mote_experts = nn.ModuleList(
            _expert_grid(layers[i], mote_experts, expert_lora) for i in range(depth)
        )
        self.mome_experts = nn.ModuleList(
            _expert_grid(layers[depth + i], mome_experts, expert_lora) for i in range(depth)
        )
        self.heads = nn.ModuleDict()
        vocab = len(backbone.tokenizer)
        for task in tasks:
            if task.head_name in self.heads:  # a head shared with an earlier task
                continue
            if task.family.endswith("classification"):
                assert task.num_classes is not None
                head = classification_head(backbone.kind, hidden, task.num_classes)
            elif task.family == "image_generation":
                head = ImageGenerationHead(hidden)
            else:
                head = TextGenerationHead(hidden, vocab, max_target_length)
            self.heads[task.head_name] = head

    def _stage(self, kind: str, key: tuple[str, str, str], x, mask, routing) -> torch.Tensor:
        block, row, column = key
        blocks = self.mote_blocks if kind == "mote" else self.mome_blocks
        experts = self.mote_experts if kind == "mote" else self.mome_experts
        chosen = [experts[i][row][column] for i in range(self.depth)]
        return blocks[block](x, mask, routing, chosen)

    def forward(self, task: TaskInfo, batch: Batch) -> ModelOutput:
        feature, mote_mt = self.features(task, batch)
        head = self.heads[task.head_name]
        if task.family == "text_generation":
            prediction = head(feature, batch.target_ids.shape[1])
        else:
            prediction = head(feature)
        return ModelOutput(prediction, mote_mt)

    def features(self, task: TaskInfo, batch: Batch) -> tuple[torch.Tensor, dict]:
        """The fused feature ``[B, D]`` the task's head reads, and the pooled MoTE
        modality->task outputs per modality (DisentAFL's loss reads them)."""
        features, mote_mt = [], {}
        routing = route(batch.domain_ids, self.domains)
        for modality in task.modalities:
            x, mask = self.encoders[modality](
                images=batch.images, input_ids=batch.input_ids, attention_mask=batch.attention_mask
            )
            h = self.shared_proj(x)
            pooled = []
            for name, (mote, mome) in path_keys(modality, task.family).items():
                y = self._stage("mote", mote, h if name in FROM_SHARED_PROJ else x, mask, routing)
                if name == "modality_task":
                    mote_mt[modality] = masked_mean(y, mask)
                z = self._stage("mome", mome, y, mask, routing)
                pooled.append(masked_mean(z, mask))
            features.append(torch.stack(pooled).mean(0))
        feature = torch.stack(features).mean(0)  # a fused task averages its modalities
        return feature, mote_mt

    def task_components(self, task: TaskInfo) -> list[str]:
        """Every component task ``task`` uses: its encoders, ``shared_proj``, the blocks and
        experts on its four paths per modality, its domain experts in those blocks, its head
        (shared with other tasks that name the same head)."""
        components = [f"encoders.{m}" for m in task.modalities] + ["shared_proj"]
        for modality in task.modalities:
            for mote, mome in path_keys(modality, task.family).values():
                for kind, (block, row, column) in (("mote", mote), ("mome", mome)):
                    for i in range(self.depth):
                        layer = f"{kind}_blocks.{block}.layers.{i}"
                        components.append(f"{layer}.attn")
                        for domain in task.domains:
                            components += [f"{layer}.mode_q.{domain}", f"{layer}.mode_v.{domain}"]
                        components.append(f"{kind}_experts.{i}.{row}.{column}")
        components.append(f"heads.{task.head_name}")
        return list(dict.fromkeys(components))


def _expert_grid(layer: nn.Module, keys: set[tuple[str, str]], lora) -> nn.ModuleDict:
    grid = nn.ModuleDict()
    for row, column in sorted(keys):
        if row not in grid:
            grid[row] = nn.ModuleDict()
        grid[row][column] = ExpertFFN(layer, lora)
    return grid


__all__ = ["SHARED", "ModelOutput", "TapModel", "TaskInfo"]
