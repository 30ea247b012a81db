"""The typed recipe: one YAML file validated against these dataclasses.

    model:          CodecConfig (audiotok/codecs/base.py)
    data:           DataConfig (audiotok/data/data_config.py)
    discriminators: list of {type: mpd|msd|msstft|mrd|cqt, ...}
    losses:         weights by loss name, each reconstruction loss's options
    optim:          optimisers and LR schedule
    train:          steps, batch, logging/validation/checkpoint cadence, run directory
    distill:        DistillConfig (audiotok/distill/distill_config.py): teachers and heads, optional

Every default lives in these dataclasses (and DataConfig's), not in recipes/base.yaml: the
package carries them, recipes/ is not installed with it. They are DAC's where DAC has one
(Kumar et al. 2023; descript-audio-codec conf/base.yml: AdamW lr 1e-4, betas (0.8, 0.99),
exponential decay 0.999996 per step, MPD + MRD, its loss weights, 0.38 s training excerpts;
its scripts/train.py: gradients clipped at 1000, batch 12 per process) and sized for GPUs
otherwise (400k steps, validation and checkpoints every 5000 steps, 4 loader workers).
base.yaml repeats only the loss weights, for overlays to add to, and asks for `data.train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from pathlib import Path

from ..codecs.base import CodecConfig
from ..data.data_config import DataConfig
from ..distill.distill_config import DistillConfig
from ..errors import AudiotokError, ConfigError
from ..losses.reconstruction import options_sections
from ..recipe import apply_overrides, load_recipe
from ..strict_config import check_ranges, from_dict
from .perturb import PerturbConfig

TRAINABLE = ("all", "decoder")


def _dac_weights() -> dict[str, float]:
    # DAC (Kumar et al. 2023) weights: mel 15, adversarial 1, feature matching 2,
    # commitment 0.25, codebook 1.
    return {"mel": 15.0, "adv/gen": 1.0, "feat": 2.0, "vq/commit": 0.25, "vq/codebook": 1.0}


@dataclass
class LossWeighting:
    """The `losses` keys besides the reconstruction losses' own option sections."""

    weights: dict[str, float] = field(default_factory=_dac_weights)
    adversarial: str = "hinge"          # hinge | lsgan
    balancer: bool = False              # EnCodec gradient balancer for output losses

    def __post_init__(self):
        if self.adversarial not in ("hinge", "lsgan"):
            raise ValueError(f"adversarial must be hinge or lsgan, got '{self.adversarial}'")
        negative = [k for k, w in self.weights.items() if w < 0]
        if negative:
            raise ValueError(f"weights.{negative[0]} must be >= 0, got {self.weights[negative[0]]}")


def _loss_config() -> type:
    """LossWeighting plus one mapping per options section of the registered reconstruction
    losses (losses/reconstruction.py): `losses.mel`, `losses.stft`, `losses.phase`, ... A new
    loss with options brings its section; the trainer checks a section against the loss's
    config dataclass when the loss is weighted (train/generator_losses.py)."""
    sections = [(s, dict, field(default_factory=dict)) for s in options_sections()]
    cls = make_dataclass("LossConfig", sections, bases=(LossWeighting,))
    cls.__module__ = __name__
    cls.__doc__ = ("The recipe's `losses`: LossWeighting's keys and the reconstruction "
                   f"losses' option sections ({', '.join(options_sections())}).")
    return cls


LossConfig = _loss_config()


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
        check_ranges(self, positive=("lr", "disc_lr", "grad_clip"),
                     at_least_0=("weight_decay", "warmup_steps"))
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")


@dataclass
class TrainConfig:
    steps: int = 400_000
    batch_size: int = 12                # per process (DAC train.py)
    disc_start_step: int = 0
    log_every: int = 50
    val_every: int = 5000
    val_batches: int = 4
    ckpt_every: int = 5000
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
    # the decoder reads codes with a fraction replaced, as an LM's errors would (perturb.py)
    perturb: PerturbConfig | None = None
    # "all", or "decoder": RobusTok's post-training (Qiu et al. 2025, sec. 3.3) fine-tunes
    # the decoder of trained weights (init_from) with the encoder and quantizer frozen
    trainable: str = "all"

    def __post_init__(self):
        # val_every 0 turns validation off; the other cadences divide the step count
        check_ranges(self, positive=("steps", "batch_size", "log_every", "ckpt_every",
                                     "keep_checkpoints"),
                     at_least_0=("disc_start_step", "val_every", "val_batches",
                                 "audio_examples", "seed"))
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {', '.join(TRAINABLE)}, "
                             f"got '{self.trainable}'")


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


def _model_of(path, ref: str) -> dict:
    """The model config of the codec `ref` names (train.init_from), as its loader wrote it."""
    from ..codecs.loading import load_codec

    config = Path(ref) / "config.json"
    if config.is_file() and (Path(ref) / "model.safetensors").is_file():
        import json

        try:
            meta = json.loads(config.read_text())
            if "config" in meta:  # an audiotok checkpoint: its config, without the weights
                return meta["config"]
        except ValueError:
            pass
    try:
        return load_codec(ref)._config_dict()
    except AudiotokError as e:
        raise ConfigError(f"{path}: the recipe has no 'model' and train.init_from cannot "
                          f"give one: {e}") from None


def _check_trainable(path, recipe: Recipe) -> None:
    """A decoder-only post-training needs trained weights to freeze, and leaves nothing for
    distillation heads (they train the encoder through the quantizer) to act on."""
    if recipe.train.trainable != "decoder":
        return
    if not recipe.train.init_from:
        raise ConfigError(f"{path}: train.trainable: decoder fine-tunes the decoder of trained "
                          f"weights; set train.init_from to them")
    if recipe.distill is not None:
        raise ConfigError(f"{path}: train.trainable: decoder freezes the encoder that the "
                          f"distill heads train; drop them with --set distill=null")


def read_recipe(path, overrides: list[str] | None = None) -> Recipe:
    """Load `path` (resolving `extends`), apply `key=value` overrides, validate. Every
    problem found (unknown keys, bad values, keys still "???") is reported at once."""
    raw = apply_overrides(load_recipe(path), overrides or [])
    raw.setdefault("name", Path(path).stem)
    init_from = (raw.get("train") or {}).get("init_from")
    if "model" not in raw and isinstance(init_from, str):
        # a fine-tune whose recipe leaves the model to the weights it starts from
        raw["model"] = _model_of(path, init_from)
    try:
        recipe = from_dict(Recipe, raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    _check_trainable(path, recipe)
    if recipe.data is None:  # a recipe without data can still build its codec
        raise ConfigError(f"{path}: recipe has no 'data' section (set data.train to a folder "
                          f"or manifest, e.g. --set data.train=/path/to/audio)")
    from ..discriminators import DISCRIMINATORS

    recipe.discriminators = [DISCRIMINATORS.normalise(d, f"discriminators[{i}]")
                             for i, d in enumerate(recipe.discriminators)]
    return recipe
