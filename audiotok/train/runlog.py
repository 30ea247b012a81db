"""TensorBoard scalars, audio and spectrogram images, and the progress bar (rank 0 only)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import Tensor


class RunLogger:
    """Writes to `<run>/tb`; every method is a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool, start_step: int, total_steps: int):
        self.enabled = enabled
        self.writer = None
        self.bar = None
        self._last = (time.perf_counter(), start_step)
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        # purge_step drops points a killed run logged after its last checkpoint
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_step or None)
        self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                        file=sys.stderr, disable=None)

    def info(self, message: str) -> None:
        if self.enabled:
            (self.bar.write if self.bar is not None else print)(f"[audiotok] {message}")

    def throughput(self, step: int, audio_seconds_per_step: float) -> dict[str, float]:
        now = time.perf_counter()
        then, last_step = self._last
        self._last = (now, step)
        rate = (step - last_step) / max(now - then, 1e-9)
        return {"perf/steps_per_s": rate, "perf/audio_s_per_s": rate * audio_seconds_per_step}

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            tag = name if name.startswith("perf/") else f"{prefix}/{name}"
            self.writer.add_scalar(tag, value, step)

    def progress(self, step: int, shown: dict[str, float]) -> None:
        """Called every `log_every` steps: updates the bar on a terminal; without one (nohup,
        a batch job's log file) prints one plain line, so logs show how far a run got."""
        if not self.enabled:
            return
        text = {k.split("/")[-1]: f"{v:.3g}" for k, v in shown.items()}
        if not self.bar.disable:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(text, refresh=False)
        else:
            line = " ".join(f"{k}={v}" for k, v in text.items())
            print(f"[audiotok] step {step}/{self.bar.total} {line}", file=sys.stderr, flush=True)

    def audio(self, step: int, name: str, wav: Tensor, sample_rate: int) -> None:
        if not self.enabled:
            return
        mono = wav.float().mean(0).clamp(-1, 1).cpu()
        self.writer.add_audio(f"audio/{name}", mono, step, sample_rate=sample_rate)
        self.writer.add_figure(f"spectrogram/{name}", spectrogram_figure(mono, sample_rate),
                               step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def spectrogram_figure(wav: Tensor, sample_rate: int):
    """A log-magnitude spectrogram of mono `wav` [T] as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_fft = 1024 if sample_rate >= 16000 else 512
    spec = torch.stft(wav, n_fft, n_fft // 4, window=torch.hann_window(n_fft),
                      return_complex=True).abs()
    db = 20 * torch.log10(spec.clamp(min=1e-5))
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.imshow(db.numpy(), origin="lower", aspect="auto", vmin=float(db.max()) - 80,
              extent=(0, wav.shape[-1] / sample_rate, 0, sample_rate / 2000))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kHz")
    fig.tight_layout()
    return fig
