"""A BEATs recipe: one YAML file with a `beats:` section, validated against these dataclasses.

    beats:   stage (ssl | tokenizer) and its parts: the SSL model, the teacher, the estimator
    model:   the tokenizer codec (CodecConfig, family beats): in stage ssl the one whose codes
             are the labels (frozen; `beats.tokenizer` may name a trained one instead), in
             stage tokenizer the one trained; `load_codec(recipe.yaml)` builds it
    data, optim, train: as every recipe (audiotok/train/recipe_config.py)
    losses:  weights by loss name: ssl/mlm; distill/cosine, vq/commit

Stage ssl (iteration 1, and the SSL half of every later one) trains the SSL model to predict
the tokenizer's labels of masked patches; stage tokenizer (iteration 2+) trains a tokenizer
whose estimator predicts the SSL teacher's last layer from the quantized patches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..codecs.base import CodecConfig
from ..data.data_config import DataConfig
from ..errors import ConfigError
from ..recipe import apply_overrides, load_recipe
from ..strict_config import from_dict
from ..train.recipe_config import OptimConfig, TrainConfig
from .ssl_model import SSLModelConfig

STAGES = ("ssl", "tokenizer")
LOSSES = {"ssl": ["ssl/mlm"], "tokenizer": ["distill/cosine", "vq/commit"]}


@dataclass
class EstimatorConfig:
    """The tokenizer estimator: a linear map from the codebook space to the teacher's width,
    then `layers` Transformer layers shaped as the teacher's (3 in BEATs, sec. 3.2.2)."""

    layers: int = 3

    def __post_init__(self):
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")


@dataclass
class BEATsConfig:
    """stage:     ssl | tokenizer
    tokenizer: stage ssl: directory of a trained tokenizer (a stage-tokenizer run's model/)
               whose codes are the labels, instead of the recipe's `model`
    ssl:       stage ssl: the SSL model trained
    teacher:   stage tokenizer: directory of the SSL model distilled (a stage-ssl run's model/)
    estimator: stage tokenizer: the estimator trained with the tokenizer (then dropped)
    """

    stage: str = "ssl"
    tokenizer: str | None = None
    ssl: SSLModelConfig = field(default_factory=SSLModelConfig)
    teacher: str | None = None
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got '{self.stage}'")
        if self.stage == "tokenizer" and not self.teacher:
            raise ValueError("teacher must name the SSL model to distil (stage ssl's output, "
                             "e.g. runs/beats_iter1/model)")
        if self.stage == "tokenizer" and self.tokenizer:
            raise ValueError("tokenizer is read in stage ssl only (stage tokenizer trains "
                             "the recipe's model)")
        if self.stage == "ssl" and self.teacher:
            raise ValueError("teacher is read in stage tokenizer only")


def _default_weights() -> dict[str, float]:
    # L_MAM (eq. 4) alone; the tokenizer's eq. 2: cosine and commitment at weight 1 (the
    # public NormEMAVectorQuantizer's beta = 1)
    return {"ssl/mlm": 1.0, "distill/cosine": 1.0, "vq/commit": 1.0}


@dataclass
class BEATsLossConfig:
    weights: dict[str, float] = field(default_factory=_default_weights)

    def __post_init__(self):
        names = sorted({n for names in LOSSES.values() for n in names})
        for key, weight in self.weights.items():
            if key not in names:
                from ..errors import did_you_mean

                raise ValueError(f"weights.{key} names no BEATs loss{did_you_mean(key, names)}; "
                                 f"they are: {', '.join(names)}")
            if weight < 0:
                raise ValueError(f"weights.{key} must be >= 0, got {weight}")


@dataclass
class BEATsRecipe:
    name: str = "beats"
    beats: BEATsConfig = field(default_factory=BEATsConfig)
    model: CodecConfig = field(default_factory=CodecConfig)
    data: DataConfig | None = None
    losses: BEATsLossConfig = field(default_factory=BEATsLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.train.run_dir or f"runs/{self.name}")

    @property
    def stage(self) -> str:
        return self.beats.stage


def is_beats_recipe(raw: dict) -> bool:
    return isinstance(raw, dict) and "beats" in raw


def read_beats_recipe(path, overrides: list[str] | None = None) -> BEATsRecipe:
    """Load `path` (resolving `extends`), apply overrides, validate; every problem at once."""
    raw = apply_overrides(load_recipe(path), overrides or [])
    raw.setdefault("name", Path(path).stem)
    try:
        recipe = from_dict(BEATsRecipe, raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    if recipe.data is None:
        raise ConfigError(f"{path}: recipe has no 'data' section (set data.train to a folder "
                          f"or manifest, e.g. --set data.train=/path/to/audio)")
    stretch = recipe.beats.ssl.patch * 160 / 16000
    if recipe.data.segment_seconds < stretch:
        raise ConfigError(f"{path}: data.segment_seconds must be at least one stretch of "
                          f"patches ({stretch:g} s), got {recipe.data.segment_seconds}")
    weights = recipe.losses.weights
    if not any(weights.get(n) for n in LOSSES[recipe.stage]):
        raise ConfigError(f"{path}: stage {recipe.stage} needs a non-zero weight on one of "
                          f"losses.weights.{', '.join(LOSSES[recipe.stage])}")
    return recipe
