"""BEATs' audio SSL model: masked prediction of a tokenizer's patch labels (Chen et al. 2022,
sec. 3.3).

    wav -> fbank patches -> patch embedding -> 75 % of the patches dropped -> Transformer
        over the rest (the MAE speed-up) -> their outputs put back in place, zeros at the
        masked positions -> Transformer label predictor -> logits over the tokenizer's
        codebook -> cross-entropy on the masked patches only ("ssl/mlm", the paper's L_MAM)

`features(wav)` runs the whole sequence unmasked and returns the last layer's outputs: the
representation BEATs fine-tunes, and what the next tokenizer distils (sec. 3.2.2).
A trained model is a directory: config.json (format "beats_ssl") + model.safetensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._version import __version__
from ..errors import AudiotokError, ConfigError
from ..fileio import atomic_path
from ..modules.beats_transformer import Backbone, BackboneConfig
from ..modules.fbank_patches import PatchConfig, PatchEmbedding
from ..strict_config import from_dict, to_dict

FORMAT = "beats_ssl"


@dataclass
class SSLModelConfig(PatchConfig):
    """embed_dim: patch embedding width before the Transformer (512, BEATsConfig);
    encoder: the ViT backbone (12 x 768, 8 heads, sec. 4.2); predictor_layers: depth of the
    Transformer label predictor, at the encoder's width (the paper gives none; 3, the depth
    of its tokenizer estimator); mask_ratio: share of patches masked (75 %, sec. 3.3)."""

    embed_dim: int = 512
    encoder: BackboneConfig = field(default_factory=BackboneConfig)
    predictor_layers: int = 3
    mask_ratio: float = 0.75

    def __post_init__(self):
        super().__post_init__()
        if self.embed_dim < 1 or self.predictor_layers < 1:
            raise ValueError(f"embed_dim and predictor_layers must be >= 1, got "
                             f"{self.embed_dim}, {self.predictor_layers}")
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")


@dataclass
class MaskedPrediction:
    """loss: cross-entropy over masked patches; accuracy: share of them predicted right."""

    loss: Tensor
    accuracy: Tensor


class SSLModel(nn.Module):
    def __init__(self, cfg: SSLModelConfig, n_labels: int):
        super().__init__()
        self.cfg = cfg
        self.n_labels = n_labels
        dim = cfg.encoder.dim
        self.embed = PatchEmbedding(cfg, cfg.embed_dim, dim)
        self.encoder = Backbone(cfg.encoder)
        self.predictor = Backbone(BackboneConfig(**{**to_dict(cfg.encoder),
                                                    "layers": cfg.predictor_layers}))
        self.head = nn.Linear(dim, n_labels)

    @property
    def dim(self) -> int:
        return self.cfg.encoder.dim

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    def features(self, wav: Tensor) -> Tensor:
        """wav [B, C, T] at 16 kHz (T a multiple of patch * 160) -> last layer [B, N, dim]."""
        return self.encoder(self.embed(wav))

    def draw_mask(self, batch: int, n: int, device) -> Tensor:
        """Indices [B, n_keep] (sorted) of the patches each item keeps, drawn uniformly with
        the global RNG; the same count for every item."""
        keep = max(1, n - round(self.cfg.mask_ratio * n))
        order = torch.rand(batch, n, device=device).argsort(-1)
        return order[:, :keep].sort(-1).values

    def forward(self, wav: Tensor, labels: Tensor, keep: Tensor | None = None
                ) -> MaskedPrediction:
        """wav [B, C, T], labels long [B, N] (the tokenizer's codes) -> MaskedPrediction;
        `keep` [B, n_keep] from `draw_mask` (drawn here when None)."""
        x = self.embed(wav)
        b, n, d = x.shape
        if labels.shape != (b, n):
            raise ValueError(f"labels must be [B, N] = {(b, n)}, got {tuple(labels.shape)}")
        if keep is None:
            keep = self.draw_mask(b, n, x.device)
        encoded = self.encoder(x, keep)
        filled = torch.zeros_like(x).scatter(1, keep[..., None].expand(-1, -1, d), encoded)
        masked = torch.ones(b, n, dtype=torch.bool, device=x.device).scatter(1, keep, False)
        logits = self.head(self.predictor(filled))[masked].float()
        target = labels[masked]
        loss = F.cross_entropy(logits, target)
        accuracy = (logits.argmax(-1) == target).float().mean()
        return MaskedPrediction(loss, accuracy)

    # ------------------------------------------------------------------ directory
    def save(self, path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(path / "model.safetensors") as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        meta = {"format": FORMAT, "audiotok_version": __version__, "n_labels": self.n_labels,
                "config": to_dict(self.cfg)}
        with atomic_path(path / "config.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
        return path


def load_ssl_model(path, where: str = "teacher") -> SSLModel:
    """The SSL model saved in directory `path`, in eval mode; one-line AudiotokError (naming
    the recipe key `where`) if it is missing or is something else."""
    from safetensors.torch import load_file

    folder = Path(path)
    config, weights = folder / "config.json", folder / "model.safetensors"
    if not (config.is_file() and weights.is_file()):
        raise AudiotokError(f"{where}: no BEATs SSL model at {path} (config.json + "
                            f"model.safetensors); train iteration 1 first: audiotok train "
                            f"recipes/designs/beats_iter1.yaml")
    try:
        meta = json.loads(config.read_text())
    except ValueError as e:
        raise AudiotokError(f"{where}: {config} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AudiotokError(f"{where}: {path} is not a BEATs SSL model (its config.json has "
                            f"no format '{FORMAT}'; a codec's directory is not a teacher)")
    try:
        cfg = from_dict(SSLModelConfig, meta["config"], "config")
        model = SSLModel(cfg, int(meta["n_labels"]))
        model.load_state_dict(load_file(str(weights)))
    except (ConfigError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AudiotokError(f"{where}: {path} does not load ({first})") from None
    return model.eval().requires_grad_(False)
