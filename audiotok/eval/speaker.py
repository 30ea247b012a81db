"""Speaker embeddings for the eval's SIM: cosine similarity of original and reconstruction.

    model = load_speaker_model("resemblyzer")            # Resemblyzer's GE2E encoder
    model = load_speaker_model("microsoft/wavlm-base-plus-sv")  # transformers x-vector model
    sim = cosine(model.embed(ref_16k), model.embed(out_16k))

`resemblyzer` uses the speaker encoder the PyPI package `resemblyzer` ships (GE2E, Wan et
al. 2018), with its own preprocessing (volume normalisation, long silences cut). Any other
reference is a transformers model with an x-vector head (`WavLMForXVector`,
`UniSpeechSatForXVector`, `Wav2Vec2ForXVector`: a hub id or a local folder), as the codec
papers that report SIM with WavLM-TDNN-style verifiers use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AudiotokError
from .asr import SAMPLE_RATE, first_line, hub_offline


class ResemblyzerSpeaker:
    name = "resemblyzer"

    def __init__(self, device: str = "cpu"):
        try:
            from resemblyzer import VoiceEncoder
        except ImportError:
            raise AudiotokError("--speaker-model resemblyzer needs the package: pip install "
                                "resemblyzer") from None
        self.encoder = VoiceEncoder(device=device, verbose=False)

    def embed(self, wav: np.ndarray) -> np.ndarray:
        from resemblyzer import preprocess_wav

        x = preprocess_wav(wav.astype(np.float32), source_sr=SAMPLE_RATE)
        if x.size == 0:  # all of it below the VAD's threshold: embed the clip as it is
            x = wav.astype(np.float32)
        return np.asarray(self.encoder.embed_utterance(x), dtype=np.float64)


class XVectorSpeaker:
    def __init__(self, ref: str, device: str = "cpu"):
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        self.name = Path(ref).name if Path(ref).is_dir() else ref
        self.device = device
        offline = hub_offline()
        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(ref, local_files_only=offline)
            self.model = AutoModelForAudioXVector.from_pretrained(
                ref, local_files_only=offline).to(device).eval()
        except (OSError, ValueError, KeyError) as e:
            raise AudiotokError(f"--speaker-model {ref}: cannot load a transformers x-vector "
                                f"model ({first_line(e)})") from None

    def embed(self, wav: np.ndarray) -> np.ndarray:
        import torch

        inputs = self.extractor(wav.astype(np.float32), sampling_rate=SAMPLE_RATE,
                                return_tensors="pt")
        with torch.inference_mode():
            out = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        return out.embeddings[0].double().cpu().numpy()


def load_speaker_model(ref: str, device: str = "cpu"):
    if ref == "resemblyzer":
        return ResemblyzerSpeaker(device)
    if ref.startswith(("/", ".", "~")) and not Path(ref).is_dir():
        raise AudiotokError(f"--speaker-model {ref}: no such folder")
    return XVectorSpeaker(ref, device)


def cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cosine similarity; None when either embedding is zero."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return None
    return float(np.dot(a, b) / (na * nb))
