"""Pretrained backbones (FLAVA, ViLT) from a hub id or a local directory, and their tiny
random-weight twins for tests and the offline demo.

Every path goes through ``from_pretrained``: a tiny backbone is built from a small config,
saved with ``save_pretrained`` into a cache folder once, and loaded back like a hub id.
Backbone weights are frozen; only adapters and TAP's own modules train.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import string
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from tap_engine import hub
from tap_engine.cache import cache_folder
from tap_engine.config import BackboneSpec

Kind = Literal["flava", "vilt"]


@dataclass(frozen=True)
class LoraShape:
    r: int
    alpha: int
    dropout: float = 0.3


@dataclass(frozen=True)
class BackboneDefaults:
    """Per-backbone architecture of TAP_SPEC section 2 (training defaults: config.py)."""

    kind: Kind
    hub_id: str
    block_layers: int  # L: MoTE blocks use layers 0..L-1, MoME blocks L..2L-1
    encoder_lora: LoraShape  # FLAVA: q, v of the image/text models; ViLT: patch projection
    block_lora: LoraShape  # q, v of the fusion blocks' attention
    expert_lora: LoraShape  # both linears of every MoTE/MoME expert FFN


DEFAULTS: dict[Kind, BackboneDefaults] = {
    "flava": BackboneDefaults(
        kind="flava",
        hub_id="facebook/flava-full",
        block_layers=1,
        encoder_lora=LoraShape(8, 16),
        block_lora=LoraShape(16, 32),
        expert_lora=LoraShape(4, 8),
    ),
    "vilt": BackboneDefaults(
        kind="vilt",
        hub_id="dandelin/vilt-b32-mlm",
        block_layers=4,
        encoder_lora=LoraShape(4, 8),
        block_lora=LoraShape(8, 16),
        expert_lora=LoraShape(8, 16),
    ),
}


def backbone_kind(name: str) -> Kind:
    kind = name.removesuffix("-tiny")
    if kind not in DEFAULTS:
        raise ValueError(f"backbone.name: unknown backbone {name!r}")
    return kind  # type: ignore[return-value]


PAPER_IMAGE_SIZE = 224


@dataclass
class Backbone:
    """A frozen pretrained model plus what TAP needs to know about it."""

    kind: Kind
    model: nn.Module  # FlavaModel or ViltModel, frozen, in eval mode
    tokenizer: object  # a transformers tokenizer
    defaults: BackboneDefaults
    hidden: int  # D: the fusion width (FLAVA: multimodal hidden size)
    image_size_override: int | None = None  # ``backbone.image_size``

    @property
    def fusion_layers(self) -> nn.ModuleList:
        """The multimodal encoder layers TAP's MoTE/MoME blocks are initialised from."""
        if self.kind == "flava":
            return self.model.multimodal_model.encoder.layer
        return self.model.encoder.layer

    @property
    def image_size(self) -> int:
        config = self.model.config
        return int(config.image_config.image_size if self.kind == "flava" else config.image_size)

    @property
    def adaptor_size(self) -> int:
        """The side the image adaptor resizes to: 224 as in the paper's code (FLAVA's own
        size; ViLT's pretraining size is 384), or a smaller backbone's own size."""
        if self.image_size_override is not None:
            return self.image_size_override
        return min(PAPER_IMAGE_SIZE, self.image_size)

    @property
    def num_heads(self) -> int:
        config = self.model.config
        if self.kind == "flava":
            return int(config.multimodal_config.num_attention_heads)
        return int(config.num_attention_heads)


# Whole words for the tiny tokenizer: the prompt templates' words and common English;
# anything else falls back to single characters, so every English text tokenises.
_WORDS_TEXT = """a about above after again all also an and answer any appropriate are around as at
back based be below between big black blue both brown but by can choice circle color colour
common concepts contain correct could day description do does dog down each for from
generate good gray green has have he her here his how i if image in into is it its law left
like little man many medicine moral more most multiple my new news no not number of on one
only options or orange other out over people picture purple question rectangle red right
same scenarios see shape she small so some square than that the their them then there these
they this three to triangle two up use very was water way we were what when where which
white who will with woman would yellow yes you your professional following teal"""
_WORDS = _WORDS_TEXT.split()


def _tiny_vocab() -> list[str]:
    """A WordPiece vocabulary of common words and single characters, built offline."""
    chars = string.ascii_lowercase + string.digits + string.punctuation
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted(set(_WORDS) - set(chars))
    return [*specials, *chars, *(f"##{c}" for c in chars), *words]


# Random weights at pretraining scale (0.02) give nearly input-independent pooled features:
# attention barely mixes tokens and mean pooling loses the layout. Larger weights and
# strong position embeddings keep a random tiny backbone informative enough to learn on.
TINY_INIT_STD = 0.2
TINY_POSITION_STD = 1.0


def tiny_config(kind: Kind, hidden: int, max_text_length: int):
    """A small config of the real architecture; ``2L`` fusion layers, 12 heads as in TAP."""
    from transformers import FlavaConfig, ViltConfig

    layers = 2 * DEFAULTS[kind].block_layers
    vocab = len(_tiny_vocab())
    common = {
        "hidden_size": hidden,
        "num_attention_heads": 12,
        "intermediate_size": 2 * hidden,
        "initializer_range": TINY_INIT_STD,
    }
    if kind == "flava":
        return FlavaConfig(
            image_config={**common, "num_hidden_layers": 2, "image_size": 32, "patch_size": 8},
            text_config={
                **common,
                "num_hidden_layers": 2,
                "vocab_size": vocab,
                "max_position_embeddings": max_text_length + 2,
            },
            multimodal_config={**common, "num_hidden_layers": layers},
            hidden_size=hidden,
            projection_dim=hidden,
        )
    return ViltConfig(
        **common,
        num_hidden_layers=layers,
        image_size=32,
        patch_size=8,
        vocab_size=vocab,
        max_position_embeddings=max_text_length + 2,
    )


def save_tiny_backbone(
    kind: Kind, directory: Path, hidden: int = 48, max_text_length: int = 256, seed: int = 0
) -> Path:
    """Build a random-weight tiny backbone and its tokenizer; ``save_pretrained`` both."""
    from transformers import BertTokenizerFast, FlavaModel, ViltModel

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = tiny_config(kind, hidden, max_text_length)
    model = (FlavaModel if kind == "flava" else ViltModel)(config)
    with torch.no_grad():
        embeddings = model.image_model.embeddings if kind == "flava" else model.embeddings
        embeddings.position_embeddings.normal_(0.0, TINY_POSITION_STD)
        nn.init.kaiming_uniform_(embeddings.patch_embeddings.projection.weight)
    model.save_pretrained(directory)
    vocab = {token: i for i, token in enumerate(_tiny_vocab())}
    BertTokenizerFast(vocab=vocab, do_lower_case=True).save_pretrained(directory)
    return directory


def _tiny_dir(kind: Kind, hidden: int, max_text_length: int, cache_dir: Path) -> Path:
    recipe = tiny_config(kind, hidden, max_text_length).to_json_string(use_diff=False)
    key = json.dumps([recipe, TINY_POSITION_STD, _tiny_vocab()])
    directory = cache_dir / f"{kind}-tiny-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if not (directory / "config.json").exists():
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".building-"))
        save_tiny_backbone(kind, tmp, hidden, max_text_length)
        try:
            tmp.rename(directory)
        except OSError:  # another process finished the same folder first
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_backbone(spec: BackboneSpec, cache_dir: Path | None = None) -> Backbone:
    """The frozen backbone of ``spec``: ``spec.path`` (hub id or local folder) if given,
    else the hub default, or for ``*-tiny`` a random-weight model cached under
    ``cache_dir/backbones`` (default: ``tap_engine.cache.default_cache_dir()``)."""
    from transformers import AutoTokenizer, FlavaModel, ViltModel

    kind = backbone_kind(spec.name)
    source = spec.path
    if source is None and spec.name.endswith("-tiny"):
        cache = cache_folder(cache_dir, "backbones")
        max_len = max(spec.max_text_length or 256, spec.max_target_length or 0)
        source = str(_tiny_dir(kind, spec.tiny_hidden_size, max_len, cache))
    source = source or DEFAULTS[kind].hub_id
    model_cls = FlavaModel if kind == "flava" else ViltModel
    if not Path(source).is_dir():
        hub.settle()  # offline: the cached copy at once, not after the hub client's retries
    try:
        model = model_cls.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise ValueError(f"backbone.path: cannot load {kind} from {source!r}: {exc}") from exc
    model.requires_grad_(False)
    model.eval()
    config = model.config
    hidden = int(config.multimodal_config.hidden_size if kind == "flava" else config.hidden_size)
    return Backbone(kind, model, tokenizer, DEFAULTS[kind], hidden, spec.image_size)
