"""The discriminator contract (AudioCraft-style, asserted at run time in tests).

    disc(wav [B, C, T]) -> list of (logits, feature_maps), one entry per sub-discriminator
        logits:       Tensor [B, ...]   real/fake scores (any trailing shape)
        feature_maps: list[Tensor]      intermediate activations for feature matching

Each discriminator type registers its class in DISCRIMINATORS with a config dataclass; it is
built as ``cls(cfg, channels=C, sample_rate=SR)``, given only the arguments its constructor
names (most count windows and periods in samples and take no sample rate).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..registry import Registry

# every module of the package is imported on the first lookup: a type registers by being a file
DISCRIMINATORS = Registry("discriminator", packages=("audiotok.discriminators",))

DiscriminatorOutput = list[tuple[Tensor, list[Tensor]]]


class Discriminator(nn.Module):
    def forward(self, wav: Tensor) -> DiscriminatorOutput:
        raise NotImplementedError


def run_conv_stack(x: Tensor, convs: nn.ModuleList, post: nn.Module, slope: float
                   ) -> tuple[Tensor, list[Tensor]]:
    """conv -> leaky ReLU for each layer, then the output conv; every activation (and the
    output) is kept as a feature map. Returns (logits [B, N], feature maps)."""
    import torch.nn.functional as F

    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), slope)
        fmap.append(x)
    x = post(x)
    fmap.append(x)
    return x.flatten(1), fmap
