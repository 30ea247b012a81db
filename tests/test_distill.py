"""Semantic distillation: tiny random teachers of the real `transformers` classes, saved to a
temp directory and opened through the users' code path; losses, heads, trainer integration,
feature cache. Nothing is downloaded."""

import json
import math
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike

from audiotok.errors import AudiotokError, ConfigError
from audiotok.train import read_recipe

os.environ["HF_HUB_OFFLINE"] = "1"  # a wrong path must fail, never fetch
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ROOT = os.path.join(os.path.dirname(__file__), "..", "recipes", "designs")
SSL = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
       "intermediate_size": 32, "conv_dim": (8, 8), "conv_stride": (5, 64),
       "conv_kernel": (10, 64), "num_conv_pos_embeddings": 16,
       "num_conv_pos_embedding_groups": 2}
# shrink the tiny recipes further (same code paths)
SMALL = ["model.encoder.n_filters=4", "model.decoder.n_filters=4", "model.latent_dim=16",
         "model.quantizer.n_codebooks=2", "model.quantizer.codebook_size=64",
         "discriminators=[{type: mpd, periods: [2, 3], channels: [4, 8, 8, 8, 8]}]",
         "train.batch_size=2", "train.disc_start_step=2", "train.val_every=0",
         "train.log_every=1", "data.segment_seconds=0.32", "data.num_workers=0"]
WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "said", "hello", "to", "the", "world"]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizer,
        HubertConfig,
        HubertModel,
        WavLMConfig,
        WavLMModel,
        WhisperConfig,
        WhisperModel,
    )

    root = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(0)
    HubertModel(HubertConfig(**SSL)).save_pretrained(root / "hubert")
    WavLMModel(WavLMConfig(**SSL)).save_pretrained(root / "wavlm")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(root / "bert")
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(root / "bert")
    WhisperModel(WhisperConfig(vocab_size=60, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                               decoder_start_token_id=1, num_mel_bins=16, d_model=16,
                               encoder_layers=2, encoder_attention_heads=2, decoder_layers=1,
                               decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                               max_source_positions=50, max_target_positions=8)
                 ).save_pretrained(root / "whisper")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six 1.5 s files and a manifest; two files have no transcript."""
    folder = tmp_path_factory.mktemp("corpus")
    lines = []
    for i in range(6):
        sig = np.roll(speechlike(1.5, 16000, seed=i), 700 * i, axis=0) * (0.6 + 0.1 * i)
        sf.write(str(folder / f"utt{i}.wav"), sig, 16000)
        text = " ".join(WORDS[i:i + 5]) if i < 4 else None
        lines.append(json.dumps({"path": f"utt{i}.wav", "text": text, "speaker": f"s{i % 2}"}))
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def recipe(name, teachers, corpus, tmp_path, *extra):
    heads = {"speechtokenizer_16k_tiny": {"hubert": "hubert"},
             "dmcodec_16k_tiny": {"hubert": "hubert", "bert": "bert"},
             "lmspt_16k_tiny": {"whisper": "whisper"},
             "mimi_like_24k_tiny": {"wavlm": "wavlm"}}[name]
    paths = [f"distill.heads.{h}.teacher.path={teachers / t}" for h, t in heads.items()]
    return read_recipe(os.path.join(ROOT, f"{name}.yaml"),
                       [f"data.train={corpus / 'train.jsonl'}", f"train.run_dir={tmp_path}",
                        *paths, *SMALL, *extra])


def batch_of(corpus, names, starts, seconds=0.32, sr=16000):
    from audiotok.audio import load_audio

    wavs = []
    for n, s in zip(names, starts):
        wav, _ = load_audio(corpus / n, sr, 1)
        piece = wav[:, int(s * sr):int(s * sr) + int(seconds * sr)]
        wavs.append(torch.nn.functional.pad(piece, (0, int(seconds * sr) - piece.shape[-1])))
    texts = {f"utt{i}.wav": " ".join(WORDS[i:i + 5]) if i < 4 else None for i in range(6)}
    return {"wav": torch.stack(wavs), "name": list(names), "text": [texts[n] for n in names],
            "start": torch.tensor(starts, dtype=torch.float64),
            "duration": torch.full((len(names),), 1.5, dtype=torch.float64)}


# ---------------------------------------------------------------- losses
def test_losses_match_their_definitions():
    from audiotok.distill import LOSSES

    torch.manual_seed(0)
    x = torch.randn(2, 10, 6)
    floor = -torch.nn.functional.logsigmoid(torch.tensor(1.0))  # -log sigmoid(cos = 1)
    torch.testing.assert_close(LOSSES["d_axis"](x, x), floor)
    torch.testing.assert_close(LOSSES["cosine"](x, 3 * x), torch.tensor(0.0), atol=1e-6,
                               rtol=0)
    # D-axis compares each dimension's trajectory over time: per-dimension scale is free
    scaled = x * torch.rand(1, 1, 6).add(0.5)
    torch.testing.assert_close(LOSSES["d_axis"](scaled, x), floor)
    assert LOSSES["cosine"](scaled, x) > 1e-4
    # T-axis = L1 + per-frame log-sigmoid cosine
    y = torch.randn(2, 10, 6)
    cos = torch.nn.functional.cosine_similarity(x, y, dim=-1)
    want = (x - y).abs().mean() - torch.nn.functional.logsigmoid(cos).mean()
    torch.testing.assert_close(LOSSES["t_axis"](x, y), want)


# ---------------------------------------------------------------- teachers
@pytest.mark.parametrize("kind", ["hubert", "wavlm"])
def test_ssl_teacher_layers_rate_and_alignment(teachers, kind):
    from transformers import AutoModel

    from audiotok.distill import TeacherConfig, build_teacher

    teacher = build_teacher(TeacherConfig(type="ssl", path=str(teachers / kind), layers=[1, 2]),
                            sample_rate=24000, frame_rate=75.0)
    assert teacher.dim == 16 and teacher.frame_rate == 50.0
    assert all(not p.requires_grad for p in teacher.model.parameters())
    wav = torch.from_numpy(speechlike(1.0, 24000).T[None].copy()).repeat(2, 1, 1)
    feats, keep = teacher.targets(wav, None, n_frames=75)
    assert feats.shape == (2, 75, 16) and keep.all()
    # the same numbers by hand: resample to 16 kHz, pad (receptive field 325 - stride 320)
    # around it, average hidden states 1 and 2: exactly 50 frames for 1 s
    import torchaudio.functional as AF

    ref = AutoModel.from_pretrained(str(teachers / kind)).eval()
    x = torch.nn.functional.pad(AF.resample(wav.mean(1), 24000, 16000), (2, 3))
    with torch.no_grad():
        hs = ref(x, output_hidden_states=True).hidden_states
    manual = (hs[1] + hs[2]) / 2
    assert manual.shape[1] == 50
    torch.testing.assert_close(teacher.targets(wav, None, 50)[0], manual, atol=1e-5, rtol=1e-4)
    # a 25 Hz codec: pairs of teacher frames are averaged
    pooled = teacher.targets(wav, None, 25)[0]
    torch.testing.assert_close(pooled, (manual[:, 0::2] + manual[:, 1::2]) / 2, atol=1e-5,
                               rtol=1e-4)


def test_teacher_errors_are_one_line(teachers, tmp_path):
    from audiotok.distill import TeacherConfig, build_teacher

    with pytest.raises(AudiotokError, match="cannot load it with transformers"):
        build_teacher(TeacherConfig(type="ssl", path=str(tmp_path / "missing")), 16000, 50.0)
    with pytest.raises(AudiotokError, match=r"has 2 layers.*\[5\]"):
        build_teacher(TeacherConfig(type="ssl", path=str(teachers / "hubert"), layers=[5]),
                      16000, 50.0)
    with pytest.raises(AudiotokError, match="not a Whisper model"):
        build_teacher(TeacherConfig(type="asr", path=str(teachers / "hubert")), 16000, 50.0)
    with pytest.raises(ValueError, match="teacher type"):
        TeacherConfig(type="hubert", path="x")


def test_whisper_log_mel_matches_the_feature_extractor_and_passes_gradients(teachers):
    from transformers import WhisperFeatureExtractor

    from audiotok.distill import TeacherConfig, build_teacher

    teacher = build_teacher(TeacherConfig(type="asr", path=str(teachers / "whisper")),
                            16000, 50.0)
    audio = speechlike(0.6, 16000)[:, 0]
    fe = WhisperFeatureExtractor(feature_size=16, chunk_length=1)
    want = fe(audio, sampling_rate=16000, return_tensors="pt").input_features
    padded = torch.nn.functional.pad(torch.from_numpy(audio)[None], (0, 16000 - len(audio)))
    torch.testing.assert_close(teacher.log_mel(padded), want, atol=1e-4, rtol=1e-4)
    wav = torch.from_numpy(audio)[None, None].clone().requires_grad_(True)
    feats = teacher.audio_features(wav, 30)  # 0.6 s = 30 encoder frames at 50 Hz
    assert feats.shape == (1, 30, 16)
    feats.pow(2).mean().backward()
    assert wav.grad is not None and wav.grad.abs().sum() > 0
    with pytest.raises(AudiotokError, match="at most 1 s"):
        teacher.audio_features(torch.zeros(1, 1, 20000), 10)


def test_text_teacher_spreads_tokens_over_the_file(teachers, corpus):
    from audiotok.distill import TeacherConfig, build_teacher

    teacher = build_teacher(TeacherConfig(type="text", path=str(teachers / "bert")),
                            16000, 50.0)
    batch = batch_of(corpus, ["utt0.wav", "utt4.wav", "utt1.wav"], [0.0, 0.3, 0.75])
    feats, keep = teacher.targets(batch["wav"], batch, 16)
    assert keep.tolist() == [True, False, True] and feats.shape == (2, 16, 16)
    states = teacher.token_states([batch["text"][0], batch["text"][2]], "cpu")
    assert [len(s) for s in states] == [5, 5]
    # 5 tokens over 1.5 s: 0.3 s each. utt0 from 0 s: frame centres 0.01..0.29 s lie under
    # token 0, the last (0.31 s) under token 1; utt1 from 0.75 s: centres 0.76..0.88 s under
    # token 2, 0.90..1.06 s under token 3
    torch.testing.assert_close(feats[0, :15], states[0][0].expand(15, -1))
    torch.testing.assert_close(feats[0, 15], states[0][1])
    torch.testing.assert_close(feats[1, :7], states[1][2].expand(7, -1))
    torch.testing.assert_close(feats[1, 7:], states[1][3].expand(9, -1))
    batch["text"] = [None, "", None]
    assert not teacher.targets(batch["wav"], batch, 16)[1].any()


# ---------------------------------------------------------------- config
def test_distill_section_is_validated(teachers, corpus, tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'distill.heads.hubert.teacher.layer'"):
        recipe("speechtokenizer_16k_tiny", teachers, corpus, tmp_path,
               "distill.heads.hubert.teacher.layer=3")
    with pytest.raises(ConfigError, match="losses must be"):
        recipe("speechtokenizer_16k_tiny", teachers, corpus, tmp_path,
               "distill.heads.hubert.losses=[d-axis]")
    with pytest.raises(ConfigError, match="text teacher cannot read reconstructed"):
        recipe("dmcodec_16k_tiny", teachers, corpus, tmp_path,
               "distill.heads.bert.input=reconstruction")
    from audiotok.train.trainer import Trainer

    r = recipe("speechtokenizer_16k_tiny", teachers, corpus, tmp_path,
               "losses.weights={mel: 1, distill/hubret/d_axis: 1}")
    with pytest.raises(ConfigError, match="'distill/hubret/d_axis'.*'distill/hubert/d_axis'"):
        Trainer(r)
    r = recipe("speechtokenizer_16k_tiny", teachers, corpus, tmp_path,
               "model.quantizer={type: fsq, levels: [5, 5]}")
    with pytest.raises(ConfigError, match="semantic level"):
        Trainer(r)


@pytest.mark.parametrize("name, rate", [("speechtokenizer_16k", 50), ("dmcodec_16k", 50),
                                        ("lmspt_16k", 25), ("lmspt_16k_12hz", 12.5),
                                        ("mimi_like_24k", 12.5)])
def test_recipes_build_at_their_frame_rates(name, rate):
    from audiotok.codecs.base import Codec

    for suffix in ("", "_tiny"):
        path = os.path.join(ROOT, f"{name}{suffix}.yaml")
        if not os.path.exists(path):
            continue
        r = read_recipe(path, ["data.train=x"])
        assert r.distill is not None and r.distill.heads
        if suffix == "_tiny":
            assert Codec(r.model).frame_rate == rate


# ---------------------------------------------------------------- training
def test_distillation_loss_falls(teachers, corpus, tmp_path):
    from audiotok.data import build_items, make_train_loader
    from audiotok.train.trainer import Trainer

    r = recipe("speechtokenizer_16k_tiny", teachers, corpus, tmp_path,
               "losses.weights={mel: 1, distill/hubert/d_axis: 10}", "optim.lr=5e-3",
               "optim.schedule=constant", "optim.warmup_steps=0", "train.disc_start_step=1000")
    trainer = Trainer(r)
    loader = make_train_loader(r.data, 16000, 1, 2, items=build_items(r.data).train)
    batch = next(iter(loader))
    losses = []
    for _ in range(14):  # overfit one batch: batch-to-batch noise would mask the trend
        losses.append(trainer.train_step(batch["wav"], batch)["distill/hubert/d_axis"])
        trainer.step += 1
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    # the D-axis floor is 0.31, random start ~0.65; measured drops 0.11 and 0.10 with 1 and 2
    # threads (across fresh batches, as this test once ran, 0.06: too close to the bound)
    assert last < first - 0.05, losses
    assert trainer.heads.proj["hubert"].weight.grad is not None


def test_export_has_no_teacher_or_head_weights_and_resume_is_exact(teachers, corpus,
                                                                   tmp_path):
    from safetensors.torch import load_file

    from audiotok.codecs.base import Codec
    from audiotok.train.checkpoint import find_latest
    from audiotok.train.trainer import Trainer

    def run(run_dir, steps):
        r = recipe("speechtokenizer_16k_tiny", teachers, corpus, run_dir,
                   f"train.steps={steps}", "train.ckpt_every=1", "train.disc_start_step=1")
        trainer = Trainer(r)
        assert trainer.fit() == 0
        trainer._lock.close()  # as if the process had exited

    run(tmp_path / "straight", 2)
    run(tmp_path / "resumed", 1)
    run(tmp_path / "resumed", 2)
    model = tmp_path / "straight" / "model"
    state = load_file(str(model / "model.safetensors"))
    config = json.loads((model / "config.json").read_text())
    codec = Codec.from_config(config["config"])
    assert set(state) == set(codec.state_dict())  # nothing of HuBERT or of the head
    assert "distill" not in json.dumps(config)
    heads = load_file(str(find_latest(tmp_path / "straight") / "distill_heads.safetensors"))
    assert set(heads) == {"proj.hubert.weight", "proj.hubert.bias"}
    resumed = json.loads((tmp_path / "resumed" / "model" / "config.json").read_text())
    assert resumed["spec"]["fingerprint"] == config["spec"]["fingerprint"]
    heads2 = load_file(str(find_latest(tmp_path / "resumed") / "distill_heads.safetensors"))
    for k in heads:
        torch.testing.assert_close(heads[k], heads2[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["dmcodec_16k_tiny", "lmspt_16k_tiny", "mimi_like_24k_tiny"])
def test_each_recipe_trains_and_its_losses_reach_the_encoder(teachers, corpus, tmp_path, name):
    from audiotok.data import build_items, make_train_loader
    from audiotok.train.trainer import Trainer

    extra = ["data.segment_seconds=0.64"] if name.startswith("mimi") else []
    r = recipe(name, teachers, corpus, tmp_path, "train.disc_start_step=0", *extra)
    trainer = Trainer(r)
    sr = r.model.sample_rate
    batch = next(iter(make_train_loader(r.data, sr, 1, 2, items=build_items(r.data).train)))
    values = trainer.train_step(batch["wav"], batch)
    names = [n for n in r.distill.loss_names() if n in values]
    assert names and all(math.isfinite(values[n]) for n in names), values
    # every distillation loss sends gradient into the encoder
    out = trainer.codec(batch["wav"], semantic_audio=trainer.heads.needs_semantic_audio)
    losses = trainer.heads(batch["wav"], out, batch)
    first = next(trainer.codec.encoder.parameters())
    for n, loss in losses.items():
        trainer.codec.zero_grad()
        loss.backward(retain_graph=True)
        assert first.grad is not None and first.grad.abs().sum() > 0, n


# ---------------------------------------------------------------- cache
def test_feature_cache_matches_the_teacher(teachers, corpus, tmp_path):
    from audiotok.data import build_items
    from audiotok.distill import TeacherConfig, build_teacher
    from audiotok.distill.cache import write_cache

    r = recipe("speechtokenizer_16k_tiny", teachers, corpus, tmp_path)
    cfg = r.distill.heads["hubert"].teacher
    items = build_items(r.data)
    write_cache(cfg, items.train + items.val, tmp_path / "cache", loudness_db=None,
                chunk_seconds=1.0, progress=False)
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert len(index["files"]) == 6 and index["files"]["utt0.wav"][1] == 75  # 1.5 s x 50 Hz
    cached_cfg = TeacherConfig(**{**vars(cfg), "cache": str(tmp_path / "cache")})
    cached = build_teacher(cached_cfg, 16000, 50.0)
    live = build_teacher(cfg, 16000, 50.0)
    batch = batch_of(corpus, ["utt2.wav", "utt5.wav"], [0.2, 1.4])  # the 2nd runs off the end
    got, _ = cached.targets(batch["wav"], batch, 16)
    want, _ = live.targets(batch["wav"], batch, 16)
    assert got.shape == want.shape == (2, 16, 16)
    # whole-file context vs excerpt: close, not equal (float16, other conv/attention context)
    cos = torch.nn.functional.cosine_similarity(got[0], want[0], dim=-1)
    assert cos.mean() > 0.9, cos
    with pytest.raises(AudiotokError, match="another teacher setting.*layers"):
        build_teacher(TeacherConfig(**{**vars(cached_cfg), "layers": [1]}), 16000, 50.0)
    batch["name"][0] = "new.wav"
    with pytest.raises(AudiotokError, match="no cached features for 'new.wav'"):
        cached.targets(batch["wav"], batch, 16)


# ---------------------------------------------------------------- k-means units
def test_kmeans_units_ssl_kmeans_codec_and_content_probe(teachers, corpus, tmp_path, capsys):
    from audiotok.audio import load_audio
    from audiotok.cli import main
    from audiotok.codecs.base import Codec
    from audiotok.codecs.loading import load_pretrained
    from audiotok.distill.probe import content_probe
    from audiotok.distill.ssl_units import load_units

    units = tmp_path / "units.safetensors"
    args = ["kmeans", "--teacher", str(teachers / "hubert"), "--data", str(corpus), "-k", "8",
            "--layers", "2", "-o", str(units), "--batch-frames", "100", "--epochs", "2"]
    assert main(args) == 0
    centroids, meta = load_units(units)
    assert centroids.shape == (8, 16) and meta["teacher"]["layers"] == [2]
    assert main([*args[:6], "400", *args[7:]]) == 1  # k above the first buffer's frames
    assert "fewer than k = 400" in capsys.readouterr().err
    model = {"family": "ssl_kmeans", "sample_rate": 16000, "latent_dim": 16,
             "encoder": {"type": "ssl", "path": str(teachers / "hubert"), "layers": [2]},
             "quantizer": {"type": "kmeans", "units": str(units), "codebook_size": 8},
             "decoder": {"type": "vocos", "dim": 16, "intermediate_dim": 32, "num_layers": 1,
                         "attention": False}}
    torch.manual_seed(0)
    codec = Codec.from_config(model).eval()
    assert codec.frame_rate == 50 and codec.codebook_sizes == [8]
    wavs = [load_audio(corpus / f"utt{i}.wav", 16000, 1)[0] for i in range(6)]
    tokens = codec.encode(wavs[0][None])
    assert tokens.codes.shape == (1, 1, 75) and int(tokens.codes.max()) < 8
    assert codec.decode(tokens).shape == (1, 1, 24000)
    codec.save_pretrained(tmp_path / "ssl_codec")
    again = load_pretrained(tmp_path / "ssl_codec")
    assert torch.equal(again.encode(wavs[0][None]).codes, tokens.codes)
    with pytest.raises(ValueError, match="latent_dim must be the SSL model's width 16"):
        Codec.from_config({**model, "latent_dim": 32})
    with pytest.raises(AudiotokError, match="no such k-means units file"):
        Codec.from_config({**model, "quantizer": {**model["quantizer"], "units": "nope"}})
    # the probe: the units codec's only level IS the units, up to frame alignment
    speakers = [f"s{i % 2}" for i in range(6)]
    probe = content_probe(codec, wavs, units, speakers)
    level = probe["levels"][0]
    assert probe["frames"] == 6 * 75 and level["nmi"] > 0.7, probe
    assert level["mi_bits"] > level["chance_bits"] and "speaker_mi_bits" in level
    st = Codec.from_config(recipe("speechtokenizer_16k_tiny", teachers, corpus, tmp_path).model)
    assert [r["level"] for r in content_probe(st.eval(), wavs[:2], units)["levels"]] == [0, 1]
