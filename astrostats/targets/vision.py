"""A small vision Transformer trained here on real images, and its heads as targets.

No pretrained ViT ships inside any package (offline-resources.md), so the project trains its own:
28 x 28 grey images, 4 x 4 patches (49 patches + CLS = 50 tokens), hidden 64, 4 layers of 4 heads
(head size 16), pre-LayerNorm blocks with an MLP of width 128: 139,018 parameters. The weights are
committed under ``astrostats/weights/`` with a manifest (data hash, command, test accuracy);
``python -m astrostats.targets.train_vit`` reproduces them.

Attention is written out (softmax(q k^T / sqrt(d_head)) v, no fused kernel), and ``forward`` accepts an
``attention`` callable that replaces every layer's softmax attention: that is how the end-to-end analysis
swaps in the neuron–astrocyte circuit.

It is written here, not with transformers, so it cannot go through the generic Hugging Face adapter
(:mod:`astrostats.targets.huggingface`): it is registered as its own target source, ``vit``
(:class:`astrostats.targets.sources.ProjectViT`), and its heads are read by forward hooks instead.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from astrostats.circuits.attention import scale_queries_keys
from astrostats.targets.base import TargetBatch
from astrostats.targets.corpora import image_set
from astrostats.targets.heads import LayerAttention, head_targets, real_labels, select
from astrostats.validation import InputError, check_int

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"  # packaged as package-data

#: attention(layer, q, k, v) -> output, q and k already scaled so q·k is the logit; shapes (B, H, N, d)
AttentionFunction = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ViTConfig:
    image_size: int = 28
    patch_size: int = 4
    hidden: int = 64
    n_layers: int = 4
    n_heads: int = 4
    mlp_hidden: int = 128
    n_classes: int = 10

    @property
    def n_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1

    @property
    def d_head(self) -> int:
        return self.hidden // self.n_heads


def softmax_heads(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The model's own attention: q and k arrive scaled, so the logit is q·k."""
    return torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v


class SelfAttention(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.out = nn.Linear(config.hidden, config.hidden)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unscaled (q, k, v), each (B, H, N, d_head)."""
        batch, n, width = x.shape
        qkv = self.qkv(x).reshape(batch, n, 3, self.n_heads, width // self.n_heads)
        return tuple(qkv.permute(2, 0, 3, 1, 4).unbind(0))

    def forward(self, x: torch.Tensor, layer: int, attention: AttentionFunction) -> torch.Tensor:
        q, k, v = self.heads(x)
        q, k = scale_queries_keys(q, k)
        output = attention(layer, q, k, v)
        return self.out(output.transpose(1, 2).flatten(2))


class Block(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden)
        self.attention = SelfAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden)
        self.mlp = nn.Sequential(nn.Linear(config.hidden, config.mlp_hidden), nn.GELU(),
                                 nn.Linear(config.mlp_hidden, config.hidden))

    def forward(self, x, layer, attention):
        x = x + self.attention(self.norm1(x), layer, attention)
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """images (B, 28, 28) -> class logits (B, 10)."""

    def __init__(self, config: ViTConfig = ViTConfig()):
        super().__init__()
        self.config = config
        self.patch = nn.Conv2d(1, config.hidden, config.patch_size, config.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, config.hidden))
        self.position = nn.Parameter(torch.zeros(1, config.n_tokens, config.hidden))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.hidden)
        self.head = nn.Linear(config.hidden, config.n_classes)
        nn.init.normal_(self.position, std=0.02)
        nn.init.normal_(self.cls, std=0.02)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        patches = self.patch(images.unsqueeze(1)).flatten(2).transpose(1, 2)
        return torch.cat([self.cls.expand(len(images), -1, -1), patches], 1) + self.position

    def forward(self, images: torch.Tensor, attention: AttentionFunction | None = None) -> torch.Tensor:
        attention = softmax_heads if attention is None else attention
        x = self.embed(images)
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, attention)
        return self.head(self.norm(x[:, 0]))


def weights_path(source: str = "mnist") -> Path:
    return WEIGHTS_DIR / f"vit_{source}.safetensors"


def manifest_path(source: str = "mnist") -> Path:
    return weights_path(source).with_suffix(".json")


def load_vit(source: str = "mnist") -> ViT:
    """The committed ViT trained on ``source`` images, in eval mode."""
    from safetensors.torch import load_file

    model = ViT(vit_config(source))
    model.load_state_dict(load_file(str(weights_path(source))))
    return model.eval()


def vit_config(source: str = "mnist") -> ViTConfig:
    """The committed ViT's configuration, from its manifest alone (no weights read)."""
    path = weights_path(source)
    if not path.exists():
        raise InputError(f"image_source: no trained ViT weights for {source!r} at {path}; train them with "
                         f"`python -m astrostats.targets.train_vit --data {source}`")
    return ViTConfig(**json.loads(manifest_path(source).read_text())["config"])


def test_images(source: str = "mnist", n_images: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out images (never seen in training) and their labels; the first ``n_images`` of the test split."""
    images, labels = image_set(source).split("test")
    if n_images is not None:
        n_images = check_int("n_images", n_images, minimum=1)
        if n_images > len(images):
            raise InputError(f"n_sequences: expected at most {len(images)} test images of {source!r}, got {n_images}")
        images, labels = images[:n_images], labels[:n_images]
    return images, labels


@torch.no_grad()
def vit_attention(model: ViT, images: torch.Tensor) -> list[LayerAttention]:
    """Every layer's scaled q, k, v and the model's own attention output, captured by forward hooks
    on the qkv projection (input side) and the output projection (its input is the attention output)."""
    captured: dict[int, dict] = {}
    hooks = []
    for layer, block in enumerate(model.blocks):
        attention = block.attention

        def keep_qkv(module, args, output, layer=layer):
            batch, n, _ = args[0].shape
            heads = output.reshape(batch, n, 3, model.config.n_heads, -1).permute(2, 0, 3, 1, 4)
            captured.setdefault(layer, {})["qkv"] = heads.unbind(0)

        def keep_output(module, args, layer=layer):
            batch, n, _ = args[0].shape
            captured[layer]["output"] = args[0].reshape(batch, n, model.config.n_heads, -1).transpose(1, 2)

        hooks.append(attention.qkv.register_forward_hook(keep_qkv))
        hooks.append(attention.out.register_forward_pre_hook(keep_output))
    try:
        model(images)
    finally:
        for hook in hooks:
            hook.remove()
    layers = []
    for layer in range(model.config.n_layers):
        q, k, v = captured[layer]["qkv"]
        q, k = scale_queries_keys(q, k)
        layers.append(LayerAttention(layer, q, k, v, captured[layer]["output"], causal=False))
    return layers


def vit_heads(*, source: str = "mnist", n_sequences: int = 8, layers=(), heads=(),
              model: ViT | None = None) -> list[TargetBatch]:
    """One TargetBatch per (layer, head) of the trained ViT on held-out test images (one image = one sequence)."""
    model = load_vit(source) if model is None else model
    images, _ = test_images(source, n_sequences)
    chosen_layers = select("layers", layers, model.config.n_layers)
    every_layer = vit_attention(model, images)  # one forward pass for all layers
    return head_targets(f"vit_{source}", [every_layer[layer] for layer in chosen_layers], heads,
                        extra={"n_kv_heads": model.config.n_heads, "source": source, **real_labels("vision")})


def config_dict(config: ViTConfig) -> dict:
    return asdict(config)
