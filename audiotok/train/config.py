"""The typed recipe: one YAML file validated against these dataclasses.

    model:          CodecConfig (audiotok/codecs/base.py)
    data:           DataConfig (audiotok/data/config.py)
    discriminators: list of {type: mpd|msd|msstft|mrd|cqt, ...}
    losses:         weights by loss name, loss options
    optim:          optimisers and LR schedule
    train:          steps, batch, logging/validation/checkpoint cadence, run directory
    distill:        DistillConfig (audiotok/distill/config.py): teachers and heads, optional
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..codecs.base import CodecConfig
from ..config import from_dict
from ..data.config import DataConfig
from ..distill.config import DistillConfig
from ..errors import ConfigError
from ..recipe import apply_overrides, load_recipe


def _dac_weights() -> dict[str, float]:
    # DAC (Kumar et al. 2023) weights: mel 15, adversarial 1, feature matching 2,
    # commitment 0.25, codebook 1.
    return {"mel": 15.0, "adv/gen": 1.0, "feat": 2.0, "vq/commit": 0.25, "vq/codebook": 1.0}


@dataclass
class LossConfig:
    weights: dict[str, float] = field(default_factory=_dac_weights)
    adversarial: str = "hinge"          # hinge | lsgan
    mel: dict = field(default_factory=dict)       # MelLossConfig overrides
    stft: dict = field(default_factory=dict)      # MultiResolutionSTFTLoss options
    phase: dict = field(default_factory=dict)     # PhaseLossConfig overrides
    balancer: bool = False              # EnCodec gradient balancer for output losses

    def __post_init__(self):
        if self.adversarial not in ("hinge", "lsgan"):
            raise ValueError(f"adversarial must be hinge or lsgan, got '{self.adversarial}'")


@dataclass
class OptimConfig:
    lr: float = 1e-4
    disc_lr: float | None = None        # defaults to lr
    betas: list[float] = field(default_factory=lambda: [0.8, 0.99])  # DAC / HiFi-GAN
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "exponential"       # exponential | cosine | constant
    gamma: float = 0.999996             # per-step decay for `exponential` (DAC)
    min_lr_ratio: float = 0.0           # floor for `cosine`
    grad_clip: float = 1000.0           # max grad norm (DAC clips at 1e3)

    def __post_init__(self):
        if self.schedule not in ("exponential", "cosine", "constant"):
            raise ValueError(f"schedule must be exponential, cosine or constant, "
                             f"got '{self.schedule}'")


@dataclass
class TrainConfig:
    steps: int = 100_000
    batch_size: int = 8
    disc_start_step: int = 0
    log_every: int = 50
    val_every: int = 1000
    val_batches: int = 4
    ckpt_every: int = 1000
    keep_checkpoints: int = 2
    audio_examples: int = 2
    seed: int = 0
    mixed_precision: bool = True        # bf16 autocast, GPU only
    compile: bool = False               # torch.compile the codec, GPU only
    device: str = "auto"                # auto | cpu | cuda
    run_dir: str | None = None          # default runs/<recipe name>
    # a codec directory (save_pretrained / a checkpoint) whose weights start the run instead
    # of a random init: a fine-tune; ignored once the run has a checkpoint to resume from
    init_from: str | None = None


@dataclass
class Recipe:
    name: str = "codec"
    model: CodecConfig = field(default_factory=CodecConfig)
    data: DataConfig | None = None
    discriminators: list[dict] = field(default_factory=lambda: [{"type": "mpd"},
                                                                 {"type": "mrd"}])
    losses: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.train.run_dir or f"runs/{self.name}")


def read_recipe(path, overrides: list[str] | None = None) -> Recipe:
    """Load `path` (resolving `extends`), apply `key=value` overrides, validate."""
    raw = apply_overrides(load_recipe(path), overrides or [])
    raw.setdefault("name", Path(path).stem)
    missing = _unset_keys(raw)
    if missing:
        raise ConfigError(f"{path}: '{missing[0]}' must be set (e.g. --set {missing[0]}=...)")
    recipe = from_dict(Recipe, raw)
    if recipe.data is None:  # a recipe without data can still build its codec
        raise ConfigError(f"{path}: recipe has no 'data' section (set data.train to a folder "
                          f"or manifest, e.g. --set data.train=/path/to/audio)")
    from ..discriminators import DISCRIMINATORS

    recipe.discriminators = [DISCRIMINATORS.normalise(d, f"discriminators[{i}]")
                             for i, d in enumerate(recipe.discriminators)]
    return recipe


def _unset_keys(node, prefix: str = "") -> list[str]:
    """Dotted keys whose value is the placeholder '???' (required, no default)."""
    if isinstance(node, dict):
        return [k for key, v in node.items() for k in _unset_keys(v, f"{prefix}{key}.")]
    return [prefix[:-1]] if node == "???" else []
