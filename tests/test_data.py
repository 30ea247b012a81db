"""The training data pipeline: indexing, splits, excerpts, sampler and loaders."""

import itertools
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike

from audiotok.audio import load_audio, read_excerpt
from audiotok.data import (
    AudioDataset,
    AudioItem,
    DataConfig,
    ResumableSampler,
    build_items,
    index_files,
    make_train_loader,
    make_val_loader,
    split_items,
)
from audiotok.errors import AudiotokError, ConfigError
from audiotok.strict_config import from_dict

SR = 16000


def _write(path, seconds, sr, channels=1, seed=0, gain=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), gain * speechlike(seconds, sr, channels, seed), sr)
    return path


@pytest.fixture
def corpus(tmp_path):
    """A folder of mixed rates/channels/formats plus a corrupt file and a short file."""
    root = tmp_path / "audio"
    _write(root / "a.wav", 2.0, 8000, seed=1)
    _write(root / "sub" / "b.wav", 1.5, 22050, channels=2, seed=2)
    _write(root / "c.flac", 1.2, 44100, seed=3)
    _write(root / "short.wav", 0.3, 8000, seed=4)
    (root / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio at all")
    (root / "notes.txt").write_text("not audio")
    return root


def _manifest(path, entries):
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def _item(path, duration):
    return AudioItem(str(path), duration, path.name)


def _loudness(wav, sr):
    import pyloudnorm

    return pyloudnorm.Meter(sr).integrated_loudness(wav.double().numpy().T)


# ----------------------------------------------------------------- indexing and splits

def test_index_folder_skips_unreadable_and_non_audio(corpus):
    index = index_files(corpus)
    assert [it.name for it in index.items] == ["a.wav", "c.flac", "short.wav", "sub/b.wav"]
    assert len(index.skipped) == 1 and "bad.wav" in index.skipped[0]
    assert index.items[0].duration == pytest.approx(2.0)
    assert index_files(corpus, min_seconds=0.5).too_short == 1


def test_index_manifest_relative_paths_text_speaker(corpus):
    manifest = _manifest(corpus / "train.jsonl", [
        {"path": "a.wav", "text": "hello", "speaker": "s1"},
        {"path": str(corpus / "sub" / "b.wav"), "speaker": 7, "duration": 1.5},
        {"path": "missing.wav", "duration": 3.0},
    ])
    index = index_files(manifest)
    a, b = index.items
    assert a.path == str(corpus / "a.wav") and a.text == "hello" and a.speaker == "s1"
    assert a.duration == pytest.approx(2.0) and b.duration == 1.5 and b.speaker == "7"
    assert len(index.skipped) == 1 and "missing.wav" in index.skipped[0]


@pytest.mark.parametrize("line, message", [
    ('{"path": "a.wav", ', "line 2: invalid JSON"),
    ('{"text": "no path"}', 'line 2: missing "path"'),
    ('["a.wav"]', "line 2: expected a JSON object"),
    ('{"path": "a.wav", "duration": "long"}', 'line 2: "duration"'),
])
def test_bad_manifest_line_is_named(corpus, line, message):
    manifest = corpus / "m.jsonl"
    manifest.write_text('{"path": "a.wav"}\n' + line + "\n")
    with pytest.raises(AudiotokError, match=message):
        index_files(manifest)


def test_nothing_found_says_where_it_looked(tmp_path, corpus):
    with pytest.raises(AudiotokError, match=rf"no usable audio.*{tmp_path / 'empty'}"):
        (tmp_path / "empty").mkdir()
        index_files(tmp_path / "empty")
    with pytest.raises(AudiotokError, match="1 unreadable"):
        index_files(_manifest(tmp_path / "m.jsonl", [{"path": str(corpus / "bad.wav")}]))
    with pytest.raises(AudiotokError, match="no such folder"):
        index_files(tmp_path / "nowhere")


def test_val_split_is_stable_and_disjoint(tmp_path):
    root = tmp_path / "many"
    for i in range(40):
        _write(root / f"f{i:02d}.wav", 0.05, 8000, seed=i)
    cfg = DataConfig(train=str(root), val_fraction=0.2)
    first, again = build_items(cfg), build_items(cfg)
    assert [it.name for it in first.val] == [it.name for it in again.val]
    train, val = {it.name for it in first.train}, {it.name for it in first.val}
    assert val and not train & val and len(train | val) == 40
    for i in range(40, 60):  # adding files never moves an old file across the split
        _write(root / f"f{i:02d}.wav", 0.05, 8000, seed=i)
    grown = build_items(cfg)
    assert {it.name for it in grown.val if it.name < "f40"} == val
    tiny = split_items(first.train[:3], 0.001)  # at least one file is held out
    assert len(tiny[1]) == 1 and len(tiny[0]) == 2


def test_val_by_speaker_holds_out_whole_speakers(corpus):
    entries = [{"path": "a.wav", "speaker": f"spk{s}", "duration": 2.0}
               for s in range(8) for _ in range(3)]
    manifest = _manifest(corpus / "spk.jsonl", entries)
    splits = build_items(DataConfig(train=str(manifest), val_fraction=0.3, val_by_speaker=True))
    val_speakers = {it.speaker for it in splits.val}
    assert val_speakers and not val_speakers & {it.speaker for it in splits.train}
    assert len(splits.val) == 3 * len(val_speakers)
    no_speaker = _manifest(corpus / "nospk.jsonl", [{"path": "a.wav"}, {"path": "c.flac"}])
    with pytest.raises(AudiotokError, match="speaker"):
        build_items(DataConfig(train=str(no_speaker), val_by_speaker=True))


def test_config_is_strict():
    cfg = from_dict(DataConfig, {"train": "x", "augment": {"gain_db": [-3, 3]}})
    assert cfg.augment.gain_db == [-3.0, 3.0]
    with pytest.raises(ConfigError, match="augment.gian_db"):
        from_dict(DataConfig, {"train": "x", "augment": {"gian_db": [-3, 3]}})
    with pytest.raises(ConfigError, match="val_fraction"):
        from_dict(DataConfig, {"train": "x", "val_fraction": 1.5})


# ----------------------------------------------------------------- excerpts

@pytest.mark.parametrize("channels", [1, 2])
def test_excerpt_shapes_from_mixed_rates(corpus, channels):
    items = index_files(corpus).items
    ds = AudioDataset(items, SR, channels, 0.5, loudness_db=-24.0, seed=0, train=True)
    for i in range(8):
        out = ds[i]
        assert out["wav"].shape == (channels, 8000) and out["wav"].dtype == torch.float32
        assert torch.isfinite(out["wav"]).all() and out["index"] == i and out["failed"] == 0
    val = AudioDataset(items, SR, channels, 0.75, seed=0, train=False)
    assert len(val) == 4 and all(val[i]["wav"].shape == (channels, 12000) for i in range(4))


def test_excerpts_are_deterministic_per_seed_and_index(corpus):
    items = index_files(corpus).items
    aug = {"gain_db": [-6, 6], "polarity_prob": 0.5}
    make = lambda seed: AudioDataset(items, SR, 1, 0.25, -24.0, aug, seed=seed)
    ds, twin, other_seed = make(0), make(0), make(1)
    for i in [0, 5, 12345678901]:
        assert torch.equal(ds[i]["wav"], twin[i]["wav"])
    assert not torch.equal(ds[0]["wav"], ds[1]["wav"])
    assert not torch.equal(ds[0]["wav"], other_seed[0]["wav"])
    val = AudioDataset(items, SR, 1, 0.25, -24.0, aug, seed=0, train=False)
    assert torch.equal(val[2]["wav"], val[2]["wav"])


def test_excerpt_reads_the_same_samples_as_the_whole_file(corpus):
    path = corpus / "sub" / "b.wav"  # 22.05 kHz stereo
    whole, _ = load_audio(path, SR, 1)
    part = read_excerpt(path, 11025, 8820, SR, 1)  # 0.5 s .. 0.9 s
    assert part.shape == (1, 6400)
    assert torch.allclose(part, whole[:, 8000:14400], atol=1e-4)


def test_short_file_is_zero_padded_on_the_right(corpus):
    ds = AudioDataset([_item(corpus / "short.wav", 0.3)], SR, 1, 1.0, None, seed=0)
    wav = ds[3]["wav"]
    assert wav.shape == (1, SR)
    assert wav[:, :4700].abs().sum() > 0 and torch.all(wav[:, 4810:] == 0)


def test_corrupt_file_is_skipped_and_counted(corpus):
    items = [_item(corpus / "bad.wav", 20.0), _item(corpus / "a.wav", 2.0)]
    ds = AudioDataset(items, SR, 1, 0.5, -24.0, seed=0)
    outs = [ds[i] for i in range(6)]
    assert sum(o["failed"] for o in outs) > 0
    assert all(o["wav"].abs().sum() > 0 for o in outs)
    val = AudioDataset(items, SR, 1, 0.5, seed=0, train=False)
    assert val[0]["failed"] == 1 and val[1]["failed"] == 0


def test_all_corrupt_files_raise(corpus, tmp_path):
    truncated = tmp_path / "trunc.wav"
    truncated.write_bytes((corpus / "a.wav").read_bytes()[:2000])
    items = [_item(corpus / "bad.wav", 1.0), _item(truncated, 2.0)]
    for train in (True, False):
        ds = AudioDataset(items, SR, 1, 0.5, seed=0, train=train)
        with pytest.raises(AudiotokError, match="all 2 audio files failed"):
            ds[0]


@pytest.mark.parametrize("target", [-24.0, -16.0])
def test_loudness_normalised_to_target(tmp_path, target):
    quiet = _write(tmp_path / "quiet.wav", 1.5, SR, gain=0.05)
    ds = AudioDataset([_item(quiet, 1.5)], SR, 1, 1.0, target, seed=0)
    for i in range(3):
        assert abs(_loudness(ds[i]["wav"], SR) - target) < 1.0


@pytest.mark.parametrize("n", [1, 63, 64, 2007, 4094, 6400, 6401])
def test_loudness_of_excerpts_shorter_than_a_block(n):
    """Trimmed one-word recordings are shorter than BS.1770's 0.4 s block. Some of those
    lengths (2007 and 4094 samples at 16 kHz among them) once made pyloudnorm raise inside
    a loader worker, which ended a training run an hour in."""
    from audiotok.data.transforms import normalize_loudness

    wav = 0.01 * torch.from_numpy(speechlike(n / SR, SR, 1, 0)).float().reshape(1, -1)[:, :n]
    out = normalize_loudness(wav, SR, -24.0)
    assert out.shape == wav.shape and torch.isfinite(out).all()
    if n >= 64:  # long enough to measure: made louder, within full scale
        assert out.abs().max() > wav.abs().max() and out.abs().max() <= 1.0


def test_silent_excerpt_left_alone(tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(SR, dtype=np.float32), SR)
    out = AudioDataset([_item(silent, 1.0)], SR, 1, 0.5, -24.0, seed=0)[0]["wav"]
    assert torch.isfinite(out).all() and torch.all(out == 0)


def test_augment_gain_and_polarity(corpus):
    items = [_item(corpus / "a.wav", 2.0)]
    plain = AudioDataset(items, SR, 1, 0.5, None, None, seed=3)[0]["wav"]
    flipped = AudioDataset(items, SR, 1, 0.5, None, {"polarity_prob": 1.0,
                                                     "gain_db": [-6, -6]}, seed=3)[0]["wav"]
    assert torch.allclose(flipped, -plain * 10 ** (-6 / 20), atol=1e-6)
    val = AudioDataset(items, SR, 1, 0.5, None, {"polarity_prob": 1.0}, seed=3, train=False)
    assert val[0]["wav"].sum() * plain.sum() >= 0  # validation is never augmented


def test_audiotools_transforms_are_optional_and_seeded(corpus):
    pytest.importorskip("audiotools")
    items = [_item(corpus / "a.wav", 2.0)]
    aug = {"audiotools": [{"name": "LowPass", "cutoff": ["uniform", 500, 2000]}]}
    ds = AudioDataset(items, SR, 1, 0.25, None, aug, seed=0)
    plain = AudioDataset(items, SR, 1, 0.25, None, None, seed=0)
    assert torch.equal(ds[1]["wav"], ds[1]["wav"])
    assert not torch.allclose(ds[1]["wav"], plain[1]["wav"], atol=1e-3)
    with pytest.raises(ConfigError, match="unknown transform 'Nope'"):
        AudioDataset(items, SR, 1, 0.25, None, {"audiotools": [{"name": "Nope"}]})


# ----------------------------------------------------------------- sampler and loaders

def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


@pytest.mark.parametrize("dataset_len", [None, 7])
def test_sampler_resumes_exactly(dataset_len):
    full = _take(ResumableSampler(dataset_len, 4, seed=3), 40)
    for k in (1, 3, 9):
        assert _take(ResumableSampler(dataset_len, 4, seed=3, start_step=k), 40 - 4 * k) \
            == full[4 * k:]


@pytest.mark.parametrize("dataset_len", [None, 1000])
def test_sampler_ranks_are_disjoint_and_cover_one_stream(dataset_len):
    single = _take(ResumableSampler(dataset_len, 6, seed=1), 60)  # 10 steps of batch 6
    ranks = [_take(ResumableSampler(dataset_len, 3, seed=1, rank=r, world_size=2), 30)
             for r in range(2)]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == sorted(single)
    resumed = _take(ResumableSampler(dataset_len, 3, seed=1, rank=1, world_size=2,
                                     start_step=4), 18)
    assert resumed == ranks[1][12:]


def test_permuted_sampler_visits_every_index_once_per_epoch():
    stream = _take(ResumableSampler(10, 5, seed=0), 30)
    assert all(sorted(stream[e * 10:(e + 1) * 10]) == list(range(10)) for e in range(3))
    assert stream[:10] != stream[10:20]


def test_loaders_with_two_workers_match_in_process(corpus):
    cfg = DataConfig(train=str(corpus), segment_seconds=0.25, val_segment_seconds=0.5,
                     num_workers=2, augment={"gain_db": [-3, 3]})
    splits = build_items(cfg)
    loader = make_train_loader(cfg, SR, 1, batch_size=3, seed=5, start_step=0,
                               items=splits.train)
    batches = list(itertools.islice(loader, 2))
    assert batches[0]["wav"].shape == (3, 1, 4000) and batches[0]["failed"] == 0
    assert batches[1]["index"].tolist() == [3, 4, 5]
    cfg.num_workers = 0
    resumed = make_train_loader(cfg, SR, 1, batch_size=3, seed=5, start_step=1,
                                items=splits.train)
    assert torch.equal(next(iter(resumed))["wav"], batches[1]["wav"])
    val = list(make_val_loader(cfg, SR, 1, batch_size=2, items=splits.val))
    assert sum(len(b["index"]) for b in val) == len(splits.val)
    assert val[0]["wav"].shape[1:] == (1, 8000)
