"""The encoder/decoder contracts (codecs/contracts.py) and registry discovery (registry.py).

A family's classes are checked once, when they register: flags and hooks that disagree are
a TypeError naming both. A registry imports every module of its packages on the first
lookup, so a family is a file and nothing else. The codec calls the hooks a family declares
(here a family defined in this file: a position-dependent decoder and a cross-part check)."""

import sys
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from audiotok.codecs import Codec
from audiotok.codecs.components import DECODERS, ENCODERS
from audiotok.codecs.contracts import Decoder, Encoder
from audiotok.errors import ConfigError
from audiotok.registry import Registry


@dataclass
class Cfg:
    """No options."""


def fresh(kind="encoder", contract=Encoder) -> Registry:
    return Registry(kind, contract=contract, classes_only=True)


def encoder(**attrs) -> type:
    def forward(self, wav):
        return wav

    body = {"receptive_field": lambda self: (0, 0), "forward": forward, **attrs}
    return type("Enc", (Encoder,), body)


def decoder(**attrs) -> type:
    def forward(self, z):
        return z

    body = {"receptive_field": lambda self: (0, 0), "forward": forward, **attrs}
    return type("Dec", (Decoder,), body)


def test_consistent_classes_register():
    reg = fresh()
    cls = reg.register("plain", Cfg)(encoder())
    assert reg.entry("plain").component is cls
    staged = reg.register("staged", Cfg)(encoder(streams_in_stages=True,
                                                 stream_stages=lambda self: []))
    assert reg.entry("staged").component is staged


@pytest.mark.parametrize("attrs, message", [
    ({"streams_in_stages": True},
     r"Enc: streams_in_stages is True but it does not define stream_stages\(\)"),
    ({"stream_stages": lambda self: []}, r"streams_in_stages is False but it defines"),
    ({"takes_lengths": True, "pads_itself": True},
     r"takes_lengths is True but it does not define forward\(\.\.\., lengths\)"),
    ({"forward": lambda self, wav, lengths=None: wav}, r"takes_lengths is False but it defines"),
    ({"takes_lengths": True, "forward": lambda self, wav, lengths=None: wav},
     r"sets takes_lengths but not pads_itself"),
])
def test_inconsistent_encoders_are_refused_at_registration(attrs, message):
    reg = fresh()
    with pytest.raises(TypeError, match=message):
        reg.register("bad", Cfg)(encoder(**attrs))
    assert "bad" not in reg.names()


@dataclass
class StepsCfg:
    steps: int = 4


def _sample(self, z, steps, seed, text=None, prompt=None):
    return z


def _train(self, z, target):
    return z, {}


def _train_text(self, z, target, text=None):
    return z, {}


@pytest.mark.parametrize("attrs, cfg, message", [
    ({"supports_frame_offset": True}, Cfg, r"supports_frame_offset is True but it does not"),
    ({"forward": lambda self, z, frame_offset=0: z}, Cfg, r"supports_frame_offset is False"),
    ({"stochastic": True}, StepsCfg, r"stochastic is True but it does not define sample"),
    ({"sample": _sample}, StepsCfg, r"stochastic is False but it defines sample"),
    ({"stochastic": True, "sample": _sample}, Cfg, r"config Cfg has no `steps`"),
    ({"forward_train": _train}, Cfg, r"loss_names is False but it defines forward_train"),
    ({"loss_names": ("decoder/x",)}, Cfg, r"loss_names is True but it does not define"),
    ({"loss_names": ("decoder/x",), "forward_train": _train, "takes_text": True}, Cfg,
     r"takes_text is True but it does not define forward_train\(\.\.\., text\)"),
    ({"loss_names": ("decoder/x",), "forward_train": _train_text}, Cfg,
     r"takes_text is False but it defines forward_train\(\.\.\., text\)"),
    ({"tokens_only": True, "loss_names": ("decoder/x",), "forward_train": _train}, Cfg,
     r"sets tokens_only: it cannot also sample or train losses"),
    ({"receptive_field": Decoder.receptive_field}, Cfg, r"must define receptive_field"),
])
def test_inconsistent_decoders_are_refused_at_registration(attrs, cfg, message):
    reg = fresh("decoder", Decoder)
    with pytest.raises(TypeError, match=message):
        reg.register("bad", cfg)(decoder(**attrs))


def test_contract_registries_take_subclasses_only():
    reg = fresh()
    with pytest.raises(TypeError, match=r"encoder 'fn': register the encoder class itself"):
        reg.register("fn", Cfg)(lambda cfg: None)
    with pytest.raises(TypeError, match=r"encoder 'mod': Linear must subclass "
                                        r"audiotok.codecs.contracts.Encoder"):
        reg.register("mod", Cfg)(nn.Linear)
    # the registries every family uses hold only contract classes
    for registry, contract in ((ENCODERS, Encoder), (DECODERS, Decoder)):
        for name in registry.names():
            assert issubclass(registry.entry(name).component, contract), name


def test_registry_discovers_its_package(tmp_path, monkeypatch):
    """Modules of the package register without any import naming them; a module that fails
    to import fails the lookup, and the next lookup tries again."""
    pkg = tmp_path / "plugins_x"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "registry_x.py").write_text(
        "from audiotok.registry import Registry\n"
        "THINGS = Registry('thing', packages=('plugins_x',))\n")
    for name in ("alpha", "beta"):
        (pkg / f"{name}.py").write_text(
            "from dataclasses import dataclass\n"
            "from plugins_x.registry_x import THINGS\n\n"
            "@dataclass\nclass Cfg:\n    size: int = 1\n\n"
            f"@THINGS.register('{name}', Cfg)\n"
            "def build(cfg):\n    return cfg.size\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for m in [m for m in sys.modules if m.startswith("plugins_x")]:
        monkeypatch.delitem(sys.modules, m)
    from plugins_x.registry_x import THINGS

    assert "plugins_x.alpha" not in sys.modules
    assert THINGS.build({"type": "beta", "size": 3}, "thing") == 3
    assert THINGS.names() == ["alpha", "beta"]
    with pytest.raises(ConfigError, match=r"unknown thing type 'alpah'.*choose from alpha, beta"):
        THINGS.entry("alpah")

    (pkg / "broken.py").write_text("raise ImportError('gamma needs a missing package')\n")
    again = Registry("thing", packages=("plugins_x",))
    for _ in range(2):  # not marked discovered after a failure: the same error each time
        with pytest.raises(ImportError, match="gamma needs"):
            again.names()


# ---------------------------------------------------------------- a family in this file
@dataclass
class FramesConfig:
    """No options."""


class FramesEncoder(Encoder):
    """wav [B, 1, T] -> [B, 2, T / 4]: a strided conv, each frame from its own 4 samples."""

    def __init__(self, cfg, channels: int, latent_dim: int):
        super().__init__()
        self.hop_length = 4
        self.conv = nn.Conv1d(channels, latent_dim, 4, stride=4)

    def receptive_field(self):
        return (0, 3)

    def forward(self, wav: Tensor) -> Tensor:
        return self.conv(wav)


class FramesDecoder(Decoder):
    """z [B, 2, T'] -> [B, 1, T' * 4], plus a ramp of the absolute frame index: correct in
    chunks only if the codec hands each chunk its `frame_offset`."""

    supports_frame_offset = True

    def __init__(self, cfg, channels: int, latent_dim: int, hop_length: int):
        super().__init__()
        self.up = nn.ConvTranspose1d(latent_dim, channels, hop_length, stride=hop_length)
        self.offsets: list[int] = []

    @classmethod
    def check_codec(cls, codec) -> None:
        if codec.channels != 1:
            raise ConfigError("frames decoder: mono only")

    def receptive_field(self):
        return (0, 0)

    def forward(self, z: Tensor, frame_offset: int = 0) -> Tensor:
        self.offsets.append(frame_offset)
        index = torch.arange(z.shape[-1], dtype=z.dtype) + frame_offset
        return self.up(z) + index.repeat_interleave(4)[None, None] * 1e-2


@pytest.fixture
def frames_family(monkeypatch):
    """Registers the family above for one test (the registries are restored after)."""
    for registry in (ENCODERS, DECODERS):
        registry.discover()
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    ENCODERS.register("test_frames", FramesConfig)(FramesEncoder)
    DECODERS.register("test_frames", FramesConfig)(FramesDecoder)
    return {"family": "frames", "sample_rate": 400, "latent_dim": 2,
            "encoder": {"type": "test_frames"}, "decoder": {"type": "test_frames"},
            "quantizer": {"type": "fsq", "levels": [5, 5]}}


def test_codec_calls_the_hooks_a_family_declares(frames_family):
    torch.manual_seed(0)
    codec = Codec.from_config(frames_family).eval()
    wav = torch.randn(1, 1, 400)  # 100 frames
    tokens = codec.encode(wav)
    whole = codec.decode(tokens, chunk_seconds=None)
    codec.decoder.offsets.clear()
    chunked = codec.decode(tokens, chunk_seconds=0.1)  # 10 frames a chunk
    offsets = codec.decoder.offsets  # each chunk's first frame (with its left context)
    assert offsets[0] == 0 and len(offsets) >= 10 and offsets == sorted(set(offsets))
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    # without the hook the ramp restarts at every cut: 1e-2 per frame, 0.09 by a cut
    codec.decoder.supports_frame_offset = False
    unaware = codec.decode(tokens, chunk_seconds=0.1)
    assert (unaware - whole).abs().max() > 0.05
    assert not codec.tokens_only and codec.output_sample_rate == 400


def test_check_codec_runs_before_building(frames_family, monkeypatch):
    built = []
    monkeypatch.setattr(FramesEncoder, "__init__", lambda *a: built.append(a))
    with pytest.raises(ConfigError, match="frames decoder: mono only"):
        Codec.from_config({**frames_family, "channels": 2})
    assert not built
