"""The TAP fusion backbone (TAP_SPEC section 2.2): MoTE and MoME blocks with domain experts
(MoDE), MoTE/MoME expert FFNs, and the four paths per input modality.

Routing is by labels, not a learned gate: the sample's modality, task family and domain
pick the block, the experts and the domain experts. ``SHARED`` names the shared variant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tap_engine.models.backbones import LoraShape
from tap_engine.models.layers import add_lora, shared_copy

SHARED = "shared"

# Which samples take which domain expert: (domain, rows), rows None for the whole batch.
Routing = list[tuple[str, torch.Tensor | None]]


def route(domain_ids: torch.Tensor, domains: list[str]) -> Routing:
    """Routing for a batch, decided once per forward pass rather than in every layer. A
    batch holds one task and so, nearly always, one domain: then no sample is gathered."""
    present = torch.unique(domain_ids).tolist()
    if len(present) == 1:
        return [(domains[present[0]], None)]
    return [(domains[i], domain_ids == i) for i in present]


class DomainExpert(nn.Module):
    """The residual of an FFN on queries or values (bottleneck D/4). The last layer starts
    at zero, so a new expert adds nothing and leaves the pretrained attention as it was."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, max(hidden // 4, 1))
        self.fc2 = nn.Linear(max(hidden // 4, 1), hidden)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ExpertFFN(nn.Module):
    """A backbone layer's FFN (frozen, shared) with LoRA on both linears."""

    def __init__(self, layer: nn.Module, lora: LoraShape) -> None:
        super().__init__()
        self.fc1 = shared_copy(layer.intermediate.dense)
        self.fc2 = shared_copy(layer.output.dense)
        add_lora(self, ["fc1", "fc2"], lora)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class BlockLayer(nn.Module):
    """Frozen pre-norms and attention of a backbone layer, LoRA on q and v, and per-domain
    experts that transform q and v before attention. The FFN comes from outside (experts)."""

    def __init__(self, layer: nn.Module, domains: list[str], heads: int, lora: LoraShape):
        super().__init__()
        self.heads = heads
        self.norm_before = shared_copy(layer.layernorm_before)
        self.norm_after = shared_copy(layer.layernorm_after)
        self.attn = add_lora(shared_copy(layer.attention), ["query", "value"], lora)
        hidden = self.norm_before.normalized_shape[0]
        self.mode_q = nn.ModuleDict({d: DomainExpert(hidden) for d in domains})
        self.mode_v = nn.ModuleDict({d: DomainExpert(hidden) for d in domains})

    @staticmethod
    def _per_domain(experts: nn.ModuleDict, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        """``x`` plus, for each sample, its domain expert's residual."""
        if len(routing) == 1 and routing[0][1] is None and routing[0][0] in experts:
            return x + experts[routing[0][0]](x)  # the whole batch takes one expert
        delta = torch.zeros_like(x)
        for name, rows in routing:
            if name in experts and rows is not None:
                delta[rows] = experts[name](x[rows])
        return x + delta

    def forward(self, x: torch.Tensor, mask: torch.Tensor, routing: Routing) -> torch.Tensor:
        """``x`` [B, S, D]; ``mask`` [B, S], True at tokens; ``routing`` from ``route``."""
        b, s, d = x.shape
        attention = self.attn.attention
        normed = self.norm_before(x)
        q = self._per_domain(self.mode_q, attention.query(normed), routing)
        k = attention.key(normed)
        v = self._per_domain(self.mode_v, attention.value(normed), routing)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        context = context.transpose(1, 2).reshape(b, s, d)
        return x + self.attn.output.dense(context)


class Block(nn.Module):
    """L block layers; each is attention + residual, then an expert FFN + residual."""

    def __init__(self, layers: list[nn.Module], domains: list[str], heads: int, lora: LoraShape):
        super().__init__()
        self.layers = nn.ModuleList(BlockLayer(layer, domains, heads, lora) for layer in layers)

    def forward(self, x, mask, routing: Routing, experts: list[nn.Module]) -> torch.Tensor:
        for layer, expert in zip(self.layers, experts, strict=True):
            x = layer(x, mask, routing)
            x = x + expert(layer.norm_after(x))
        return x


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: ``[B, S, D]``, ``[B, S]`` -> ``[B, D]``."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def path_keys(modality: str, family: str) -> dict[str, tuple[tuple[str, str, str], ...]]:
    """The four paths for one input modality: per path, (block, expert row, expert column)
    of the MoTE stage, then of the MoME stage, and whether it starts from ``shared_proj``."""
    m, f, s = modality, family, SHARED
    return {
        "shared_shared": ((s, s, s), (s, s, s)),
        "shared_task": ((m, s, f), (f, f, s)),
        "modality_task": ((m, m, f), (f, f, m)),
        "modality_shared": ((m, m, s), (s, s, m)),
    }


FROM_SHARED_PROJ = {"shared_shared", "shared_task"}
