"""Published codecs by short name or hub id, resolved through the Hugging Face cache.

    load_codec("dac_16khz")            # = the hub's descript/dac_16khz (transformers format)
    load_codec("descript/dac_24khz")   # any hub id whose files a published format reads

Files come from the local Hugging Face cache (HF_HOME / HF_HUB_CACHE); when the machine is
online and they are missing they are downloaded once. Offline, a one-line error names the
repository and files to fetch and where to put them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import AudiotokError


@dataclass(frozen=True)
class PublishedName:
    name: str
    repo: str                 # hub id
    sample_rate: int
    hop_length: int
    n_codebooks: int
    codebook_size: int
    licence: str
    source: str
    files: tuple[str, ...] = ("config.json", "model.safetensors")
    subfolder: str = ""       # of the repository, where the files are
    level_strides: tuple[int, ...] = ()  # multi-rate codecs (SNAC): frames per code, per level

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def kbps(self) -> float:
        import math

        strides = self.level_strides or (1,) * self.n_codebooks
        return sum(self.frame_rate / s for s in strides) * math.log2(self.codebook_size) / 1000


# the published releases' settings (their configs on the hub and descript-audio-codec's
# model cards): hop 320 at 16/24 kHz, 512 at 44.1 kHz
NAMES = {n.name: n for n in (
    PublishedName("dac_16khz", "descript/dac_16khz", 16000, 320, 12, 1024, "MIT",
                  "descript-audio-codec, transformers DacModel format"),
    PublishedName("dac_24khz", "descript/dac_24khz", 24000, 320, 32, 1024, "MIT",
                  "descript-audio-codec, transformers DacModel format"),
    PublishedName("dac_44khz", "descript/dac_44khz", 44100, 512, 9, 1024, "MIT",
                  "descript-audio-codec, transformers DacModel format"),
    PublishedName("encodec_24khz", "facebook/encodec_24khz", 24000, 320, 32, 1024,
                  "CC-BY-NC", "EnCodec, transformers EncodecModel format"),
    PublishedName("encodec_48khz", "facebook/encodec_48khz", 48000, 320, 16, 1024,
                  "CC-BY-NC", "EnCodec 48 kHz stereo, transformers EncodecModel format"),
    PublishedName("mimi", "kyutai/mimi", 24000, 1920, 32, 2048, "CC-BY-4.0",
                  "Mimi (Kyutai), transformers MimiModel format"),
    PublishedName("speechtokenizer", "fnlp/SpeechTokenizer", 16000, 320, 8, 1024,
                  "Apache-2.0", "SpeechTokenizer (hubert_avg release)",
                  ("config.json", "SpeechTokenizer.pt"), "speechtokenizer_hubert_avg"),
    # WavTokenizer: the large unified (speech, music, audio) 40 tokens/s model, converted to
    # the transformers format by its transformers port; the 75 tokens/s model in its
    # original release (the medium speech model is the one whose repository also holds
    # its YAML; the large-speech repository has the .ckpt alone)
    PublishedName("wavtokenizer_40", "swiss-ai/wavtokenizer-large-unify-40token", 24000,
                  600, 1, 4096, "MIT", "WavTokenizer large-unify, transformers format"),
    PublishedName("wavtokenizer_75", "novateur/WavTokenizer-medium-speech-75token", 24000,
                  320, 1, 4096, "MIT", "WavTokenizer medium-speech, .ckpt + YAML release",
                  ("wavtokenizer_medium_speech_320_24k_v2.ckpt",
                   "wavtokenizer_mediumdata_frame75_3s_nq1_code4096_dim512_kmeans200_attn.yaml")),
    # X-Codec (v1): three of the five transformers conversions its docs name (speech with
    # HuBERT, speech with WavLM, general audio with a HuBERT trained on it); 16 kHz, 50
    # frames/s, 8 levels of 1024 codes (0.5 kbps each, trained at 1/2/3/4/8 levels)
    *(PublishedName(f"xcodec_{name.replace('-', '_')}", f"hf-audio/xcodec-{name}", 16000, 320,
                    8, 1024, "CC-BY-4.0", f"X-Codec ({what}), transformers XcodecModel format")
      for name, what in (("hubert-librispeech", "speech, HuBERT, LibriSpeech"),
                         ("wavlm-more-data", "speech, WavLM, MLS English and more"),
                         ("hubert-general-balanced", "general audio, HuBERT"))),
    # X-Codec-2.0 (Llasa's codec): the transformers conversion that transformers' docs name;
    # 16 kHz, 50 codes/s from one 4^8 FSQ grid. (HKUSTAudio/xcodec2 holds the original
    # code's format, which audiotok does not read.)
    PublishedName("xcodec2", "HKUSTAudio/xcodec2-hf", 16000, 320, 1, 65536, "CC-BY-NC",
                  "X-Codec-2.0 (Llasa), transformers Xcodec2Model format"),
    # NeuCodec (Neuphonic): X-Codec-2's design at 50 codes/s from 16 kHz, decoding to
    # 24 kHz; the repository transformers' NeuCodecConfig names
    PublishedName("neucodec", "neuphonic/neucodec", 16000, 320, 1, 65536, "Apache-2.0",
                  "NeuCodec (Neuphonic), transformers NeuCodecModel format, decodes at 24 kHz"),
    # SNAC (the hub's config.json files): hop 512 at 24 kHz (speech, 0.98 kbps), 384 at 32 and
    # 44.1 kHz (music, 1.9 and 2.6 kbps); 4096-entry codebooks at 1/4, 1/2, 1 (speech) or
    # 1/8 .. 1 (music) of the frame rate
    *(PublishedName(f"snac_{khz}khz", f"hubertsiuzdak/snac_{khz}khz", rate, hop, len(strides),
                    4096, "MIT", f"SNAC ({use})", ("config.json", "pytorch_model.bin"),
                    level_strides=strides)
      for khz, rate, hop, strides, use in ((24, 24000, 512, (4, 2, 1), "speech"),
                                           (32, 32000, 384, (8, 4, 2, 1), "music"),
                                           (44, 44100, 384, (8, 4, 2, 1), "music"))),
)}
FILES = ("config.json", "model.safetensors")  # a hub id outside NAMES: the transformers layout
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_ref(ref: str) -> bool:
    """A short name of NAMES or an 'owner/name' id that is not a local path."""
    return ref in NAMES or (HUB_ID.fullmatch(ref) is not None and not Path(ref).exists())


def resolve(ref: str) -> Path:
    """Short name or hub id -> the local folder holding its files (cache, else download)."""
    known = NAMES.get(ref)
    repo = known.repo if known else ref
    sub = known.subfolder if known else ""
    files = [f"{sub}/{f}" if sub else f for f in (known.files if known else FILES)]
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - transformers depends on it
        raise AudiotokError("loading by hub id needs huggingface_hub (pip install "
                            "huggingface_hub)") from None
    # read per call, so a cache folder set after import (a test, a notebook) is honoured
    cache = os.environ.get("HF_HUB_CACHE") or None
    cached = _cached(snapshot_download, repo, cache, files)
    if cached is not None:
        return cached / sub
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if not offline:
        try:
            return Path(snapshot_download(repo, allow_patterns=files, cache_dir=cache)) / sub
        except Exception as e:  # noqa: BLE001 - network and hub errors of every kind
            reason = " ".join(str(e).split())[:160] or type(e).__name__
            raise AudiotokError(_fetch_hint(ref, repo, files,
                                            f"download failed: {reason}")) from None
    raise AudiotokError(_fetch_hint(ref, repo, files, "not in the Hugging Face cache and the "
                                                      "hub is offline (HF_HUB_OFFLINE)"))


def _cached(snapshot_download, repo: str, cache: str | None, files: list[str]
            ) -> Path | None:
    try:
        folder = Path(snapshot_download(repo, allow_patterns=files, local_files_only=True,
                                        cache_dir=cache))
        return folder if all((folder / f).is_file() for f in files) else None
    except Exception:  # noqa: BLE001 - not cached (the hub library's errors vary by version)
        return None


def _fetch_hint(ref: str, repo: str, files: list[str], why: str) -> str:
    if ref not in NAMES:
        why += f" (and there is no local path '{ref}')"
    return (f"codec '{ref}': {why}; fetch {', '.join(files)} of https://huggingface.co/{repo} "
            f"on a machine that is online (huggingface-cli download {repo} "
            f"{' '.join(files)} --local-dir DIR), copy DIR here and pass --codec DIR")
