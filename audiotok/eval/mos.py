"""No-reference MOS: DNSMOS P.835 (SIG, BAK, OVRL) and P.808, run with onnxruntime.

    dnsmos = load_mos("dnsmos")          # the ONNX files the PyPI package `speechmos` ships
    dnsmos = load_mos("dnsmos:DIR")      # DIR/sig_bak_ovr.onnx and DIR/model_v8.onnx
    scores = dnsmos.score(wav_16k)       # {"dnsmos_sig": .., "dnsmos_bak": .., "dnsmos_ovrl": ..,
                                         #  "dnsmos_p808": ..}

The procedure is Microsoft's DNSMOS reference script (DNS-Challenge, DNSMOS/dnsmos_local.py;
Reddy et al. 2022, "DNSMOS P.835"): 16 kHz audio, clips shorter than 9.01 s repeated until
they are that long, 9.01 s windows every 1 s, the P.835 model's raw scores mapped through the
published cubic fits, window scores averaged; the P.808 model reads a 120-band log-mel of
each window (n_fft 321, hop 160, dB re max, (x + 40) / 40).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AudiotokError
from .asr import torch_threads

SAMPLE_RATE = 16000
WINDOW_SECONDS = 9.01
# the non-personalised P.835 fits of dnsmos_local.py (raw model output -> MOS)
_FITS = {"sig": (-0.08397278, 1.22083953, 0.0052439),
         "bak": (-0.13166888, 1.60915514, -0.39604546),
         "ovrl": (-0.06766283, 1.11546468, 0.04602535)}
MOS_KEYS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")


class DNSMOS:
    name = "dnsmos"

    def __init__(self, folder: Path):
        try:
            import onnxruntime as ort
        except ImportError:
            raise AudiotokError("--mos dnsmos needs onnxruntime: pip install onnxruntime") \
                from None
        files = [folder / "sig_bak_ovr.onnx", folder / "model_v8.onnx"]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise AudiotokError(f"--mos dnsmos: {folder} lacks {', '.join(missing)} (the "
                                f"DNSMOS P.835 and P.808 ONNX files)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch_threads()
        try:
            self.p835, self.p808 = (ort.InferenceSession(str(f), opts,
                                                         providers=["CPUExecutionProvider"])
                                    for f in files)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise AudiotokError(f"--mos dnsmos: cannot read the ONNX files in {folder} "
                                f"({str(e).strip().splitlines()[0]})") from None

    def score(self, wav: np.ndarray) -> dict[str, float]:
        """wav float [T] at 16 kHz -> the four DNSMOS scores."""
        import librosa

        audio = np.clip(wav.astype(np.float32), -1.0, 1.0)
        need = int(WINDOW_SECONDS * SAMPLE_RATE)
        if audio.size == 0:
            raise ValueError("empty clip")
        while audio.size < need:
            audio = np.concatenate([audio, audio])
        n_windows = int(np.floor(audio.size / SAMPLE_RATE) - WINDOW_SECONDS) + 1
        raw, p808 = [], []
        for k in range(n_windows):
            seg = audio[k * SAMPLE_RATE: k * SAMPLE_RATE + need]
            if seg.size < need:
                continue
            raw.append(self.p835.run(None, {"input_1": seg[None]})[0][0])
            mel = librosa.feature.melspectrogram(y=seg[:-160], sr=SAMPLE_RATE, n_fft=321,
                                                 hop_length=160, n_mels=120)
            mel = (librosa.power_to_db(mel, ref=np.max) + 40) / 40
            p808.append(self.p808.run(None, {"input_1": mel.T[None].astype(np.float32)})
                        [0][0][0])
        raw = np.asarray(raw, dtype=np.float64)
        out = {f"dnsmos_{name}": float(np.mean(np.polyval(_FITS[name], raw[:, i])))
               for i, name in enumerate(("sig", "bak", "ovrl"))}
        out["dnsmos_p808"] = float(np.mean(p808))
        return out


def load_mos(ref: str) -> DNSMOS:
    kind, _, where = ref.partition(":")
    if kind == "utmos":
        raise AudiotokError("--mos utmos: UTMOS's weights are not distributed in a form "
                            "audiotok can load offline (its checkpoint needs fairseq); use "
                            "--mos dnsmos")
    if kind != "dnsmos":
        raise AudiotokError(f"--mos {ref}: unknown; choose dnsmos (the speechmos package's "
                            f"ONNX files) or dnsmos:DIR")
    if where:
        folder = Path(where)
        if not folder.is_dir():
            raise AudiotokError(f"--mos {ref}: no such folder {where}")
        return DNSMOS(folder)
    try:
        import speechmos
    except ImportError:
        raise AudiotokError("--mos dnsmos needs its ONNX files: pip install speechmos, or give "
                            "--mos dnsmos:DIR with sig_bak_ovr.onnx and model_v8.onnx") from None
    return DNSMOS(Path(speechmos.__file__).parent / "dnsmos_models")

