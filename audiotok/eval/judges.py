"""Model-based measures of the eval: WER/CER through an ASR, speaker similarity, DNSMOS.

    judges = Judges.load(asr="tiny.en", speaker_model="resemblyzer", mos="dnsmos")
    ref_scores, scores = judges.score_clip(wav, sr, {"codec@4": out, ...}, text, language)

Every model reads 16 kHz mono; outputs are resampled to it. Per clip, the original and every
system's output go through the ASR in one batch. The words to match are the manifest's
`text`; without one, the ASR's transcript of the original (so the ASR's own errors cancel,
and the original's row has no WER). Per-clip results keep the transcripts and the edit
counts, so pooled WER/CER are total edits over total reference words, as papers report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..audio import resample
from . import text as T

SR = 16000
JUDGE_METRICS = ("wer", "cer", "sim", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl",
                 "dnsmos_p808")


@dataclass
class Judges:
    asr: object | None = None
    speaker: object | None = None
    mos: object | None = None
    seconds: dict = field(default_factory=lambda: {"asr": 0.0, "speaker": 0.0, "mos": 0.0})

    @classmethod
    def load(cls, asr: str | None = None, speaker_model: str | None = None,
             mos: str | None = None, device: str = "cpu") -> Judges:
        from .asr import load_asr
        from .mos import load_mos
        from .speaker import load_speaker_model

        return cls(load_asr(asr, device) if asr else None,
                   load_speaker_model(speaker_model, device) if speaker_model else None,
                   load_mos(mos) if mos else None)

    def __bool__(self) -> bool:
        return any((self.asr, self.speaker, self.mos))

    def describe(self) -> dict:
        return {"asr": getattr(self.asr, "name", None),
                "speaker_model": getattr(self.speaker, "name", None),
                "mos": getattr(self.mos, "name", None)}

    def score_clip(self, wav: np.ndarray, sr: int, outputs: dict, text: str | None,
                   language: str | None) -> tuple[dict, dict[str, dict]]:
        """wav float [T] at `sr`; outputs {name: SystemOutput} -> (scores of the original,
        {name: scores}); a score that cannot be had is None with its reason in "undefined"."""
        ref = _to16k(wav, sr)
        outs = {name: _to16k(o.wav, o.sample_rate) for name, o in outputs.items()}
        ref_scores = {"undefined": {}}
        scores = {name: {"undefined": {}} for name in outs}
        if self.asr is not None:
            self._asr(ref, outs, text, language, ref_scores, scores)
        if self.speaker is not None:
            t = time.perf_counter()
            emb = self.speaker.embed(ref)
            from .speaker import cosine

            for name, y in outs.items():
                scores[name]["sim"] = cosine(emb, self.speaker.embed(y))
            self.seconds["speaker"] += time.perf_counter() - t
        if self.mos is not None:
            t = time.perf_counter()
            for target, y in [(ref_scores, ref)] + [(scores[n], y) for n, y in outs.items()]:
                target.update(self.mos.score(y))
            self.seconds["mos"] += time.perf_counter() - t
        return ref_scores, scores

    def _asr(self, ref, outs, text, language, ref_scores, scores) -> None:
        reason = self.asr.check_language(language)
        if reason:
            for s in [ref_scores, *scores.values()]:
                s["undefined"].update(wer=reason, cer=reason)
            return
        t = time.perf_counter()
        names = list(outs)
        heard = self.asr.transcribe([ref] + [outs[n] for n in names], language)
        self.seconds["asr"] += time.perf_counter() - t
        spelling = self.asr.spelling_file
        norm = [T.normalise(h, language, spelling) for h in heard]
        target = T.normalise(text, language, spelling) if text else norm[0]
        ref_scores["asr_text"] = heard[0]
        if text:
            ref_scores["errors"] = T.errors(target, norm[0]).__dict__
        else:
            ref_scores["undefined"].update(wer="no text: the original's transcript is the "
                                               "reference", cer="no text")
        for name, hyp, hyp_norm in zip(names, heard[1:], norm[1:]):
            scores[name]["asr_text"] = hyp
            scores[name]["errors"] = T.errors(target, hyp_norm).__dict__
            if not target:
                scores[name]["undefined"].update(wer="empty reference text",
                                                 cer="empty reference text")


def pool(scores: list[dict]) -> dict:
    """Per-clip judge scores of one system -> {metric: {mean, n, n_undefined}}; WER/CER pool
    edits over words (their "mean" is the pooled rate)."""
    out = {}
    counted = [T.Errors(**s["errors"]) for s in scores
               if "errors" in s and "wer" not in s["undefined"]]
    if any("errors" in s or "wer" in s["undefined"] for s in scores):
        rates = T.pooled_rates(counted)
        for m in ("wer", "cer"):
            out[m] = {"mean": rates[m], "n": len(counted),
                      "n_undefined": len(scores) - len(counted)}
    for m in JUDGE_METRICS[2:]:
        values = [s[m] for s in scores if s.get(m) is not None]
        if any(m in s for s in scores):
            out[m] = {"mean": float(np.mean(values)) if values else None, "n": len(values),
                      "n_undefined": len(scores) - len(values)}
    return out


def _to16k(wav: np.ndarray, sr: int) -> np.ndarray:
    x = np.asarray(wav, dtype=np.float64)
    return x if sr == SR else resample(x[None], sr, SR)[0]
