"""What the demo page computes, without any UI: a clip through a codec at K codebooks (token
file, reconstruction, metrics), a token file decoded, and the spectrogram and token-grid
images. Kept apart from the Gradio code (`demo/app.py`) so it is tested without a browser and
usable from a notebook.

    result = run_clip(codec, "tiny", "speech.flac", n_codebooks=4, out_dir=tmp, max_seconds=60)
    result.reconstruction, result.token_file, result.metrics["si_sdr"]
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..audio import audio_info, load_audio, save_audio
from ..codecs import Codec
from ..codecs.loading import bundled_models
from ..errors import AudioError, AudiotokError, TokenFileError
from ..eval.evaluate import MIN_SECONDS, SystemOutput, score
from ..tokens import Tokens, read_header

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# Used when no --codec is given and no trained model ships; only present in a source checkout.
FALLBACK_RECIPE = Path(__file__).resolve().parent.parent.parent / "recipes" / "tiny_speech_16k.yaml"
# Below these rates a metric is meaningless: PESQ-WB scores 16 kHz speech, PESQ-NB 8 kHz, and
# STOI analyses up to ~4.6 kHz at 10 kHz. An 8 kHz codec upsampled to 16 kHz would score as
# if it had dropped the whole upper band.
MIN_RATE = {"pesq_wb": 16000, "pesq_nb": 8000, "stoi": 10000}
METRIC_ROWS = (("mel_distance", "mel distance (lower is better)", "{:.3f}"),
               ("si_sdr", "SI-SDR (dB)", "{:.2f}"), ("pesq_wb", "PESQ-WB", "{:.2f}"),
               ("pesq_nb", "PESQ-NB", "{:.2f}"), ("stoi", "STOI", "{:.3f}"))


@dataclass
class ClipResult:
    """One clip through one codec at `n_codebooks`.

    clip: the upload's file name; reference / reconstruction / token_file: files in the request's folder (the reference is
    the clip as the codec hears it: its rate and channel count); ref, rec: mono float64 [T] at
    `sample_rate`, for plots; codes long [K, T']; metrics: `eval.evaluate.score` output, an
    undefined metric None with its reason in metrics["undefined"].
    """

    clip: str
    codec: str
    n_codebooks: int
    sample_rate: int
    frame_rate: float
    codebook_sizes: list[int]
    reference: Path
    reconstruction: Path
    token_file: Path
    ref: np.ndarray
    rec: np.ndarray
    codes: torch.Tensor
    metrics: dict
    seconds: float


@dataclass
class DecodeResult:
    """A token file decoded by the served codec that made it: audio file, mono wav [T]."""

    codec: str
    tokens: Tokens
    audio: Path
    wav: np.ndarray
    sample_rate: int
    note: str


def default_codec_refs() -> list[str]:
    """What the demo serves without --codec: the bundled trained models, else the tiny speech
    recipe with untrained weights (the page says so)."""
    bundled = list(bundled_models())
    if bundled:
        return bundled
    if FALLBACK_RECIPE.is_file():
        return [str(FALLBACK_RECIPE)]
    raise AudiotokError("no --codec given and no bundled model is installed")


def bundled_examples() -> list[Path]:
    """Short speech clips shipped with the package, offered as one-click inputs. The ones in
    assets/examples/ were spoken by espeak-ng (voices en-us and en-gb+f3) at 16 kHz."""
    return [ASSETS / "sample_speech.flac", *sorted((ASSETS / "examples").glob("*.flac"))]


def bitrate_hint(codec: Codec, n_codebooks: int) -> str:
    """'4 of 8 codebooks: 2.00 kbps, 200 tokens/s' (Markdown)."""
    n = codec.quantizer.check_n_codebooks(n_codebooks)
    return (f"**{n} of {codec.n_codebooks}** codebooks: {codec.bitrate(n) / 1000:.2f} kbps, "
            f"{codec.spec.tokens_per_second(n):g} tokens/s")


def user_message(e: Exception, path: Path | None = None) -> str:
    """One line, naming an upload by its file name instead of the server's temp path."""
    text = " ".join((str(e).strip() or type(e).__name__).split())
    return text.replace(str(path), path.name) if path is not None else text


def new_request_dir(root: Path, keep_seconds: float = 3600.0) -> Path:
    """A fresh folder for one request's files. Folders older than `keep_seconds` are removed so
    a long-running server does not fill the disk (by then Gradio has served its own copies)."""
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.iterdir():
        if old.is_dir() and now - old.stat().st_mtime > keep_seconds:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root))


def read_clip(path, codec: Codec, max_seconds: float) -> torch.Tensor:
    """An upload -> wav [C, T] at the codec's rate and channel count. AudioError (one line) for
    anything unusable: not audio, empty, corrupt, shorter than PESQ needs, longer than
    `max_seconds`; the duration is checked from the header before decoding."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise AudioError(f"{path.name}: file is empty")
    seconds = audio_info(path).duration
    if seconds > max_seconds:
        raise AudioError(f"{path.name}: clip is {seconds:.1f} s long; this demo takes clips of "
                         f"at most {max_seconds:g} s (--max-seconds)")
    wav, _ = load_audio(path, codec.sample_rate, codec.channels)
    if wav.shape[-1] < MIN_SECONDS * codec.sample_rate:
        raise AudioError(f"{path.name}: clip is too short ({wav.shape[-1] / codec.sample_rate:.2f}"
                         f" s; the demo needs at least {MIN_SECONDS} s)")
    return wav


def run_clip(codec: Codec, name: str, path, n_codebooks: int, out_dir: Path,
             max_seconds: float) -> ClipResult:
    """Encode `path` with the first `n_codebooks` levels, decode, save the reference, the
    reconstruction and the token file into `out_dir`, and score the reconstruction."""
    start = time.perf_counter()
    path = Path(path)
    try:
        wav = read_clip(path, codec, max_seconds)
    except AudiotokError as e:
        raise AudioError(user_message(e, path)) from None
    device = next(codec.parameters()).device
    tokens = codec.encode(wav[None].to(device), int(n_codebooks))
    tokens.meta["source"] = path.name
    rec = _at_input_rate(codec, codec.decode(tokens)[0].float().cpu())
    stem = _safe(path.stem)
    tag = f"{stem}.{_safe(name)}.{tokens.n_codebooks}cb"
    reference, reconstruction = out_dir / f"{stem}.reference.wav", out_dir / f"{tag}.wav"
    token_file = out_dir / f"{tag}.atok"
    save_audio(reference, wav, codec.sample_rate)
    save_audio(reconstruction, rec, codec.sample_rate)
    tokens.save(token_file)
    ref_m, rec_m = wav.mean(0).double().numpy(), rec.mean(0).double().numpy()
    return ClipResult(
        clip=path.name, codec=name, n_codebooks=tokens.n_codebooks, sample_rate=codec.sample_rate,
        frame_rate=codec.frame_rate, codebook_sizes=codec.codebook_sizes, reference=reference,
        reconstruction=reconstruction, token_file=token_file, ref=ref_m, rec=rec_m,
        codes=tokens.codes[0].cpu(), metrics=clip_metrics(ref_m, rec_m, tokens),
        seconds=time.perf_counter() - start)


def clip_metrics(ref: np.ndarray, rec: np.ndarray, tokens: Tokens) -> dict:
    """`eval.evaluate.score` (delay-aligned PESQ, STOI, SI-SDR, mel distance, kbps, tokens/s)
    with the metrics the codec's rate cannot support marked undefined."""
    sr = tokens.spec.sample_rate
    metrics = score(ref, SystemOutput(rec, sr, tokens.bitrate / 1000, tokens.tokens_per_second))
    for name, rate in MIN_RATE.items():
        if sr < rate:
            metrics[name] = None
            metrics["undefined"][name] = f"needs {rate / 1000:g} kHz audio; codec runs at {sr} Hz"
    return metrics


def metrics_markdown(results: list[ClipResult], headers: list[str] | None = None) -> str:
    """A Markdown table with one column per result (headed by `headers`, default the codec
    names), and the reasons for undefined cells."""
    rows = [("codec", lambda r: r.codec)] if headers else []
    headers = headers or [r.codec for r in results]
    lines = ["| | " + " | ".join(headers) + " |", "|---" * (len(results) + 1) + "|"]
    rows += [("codebooks", lambda r: str(r.n_codebooks)),
             ("bitrate (kbps)", lambda r: f"{r.metrics['kbps']:.2f}"),
             ("tokens / s", lambda r: f"{r.metrics['tokens_per_second']:g}")]
    rows += [(label, lambda r, k=key, f=fmt: _cell(r.metrics[k], f))
             for key, label, fmt in METRIC_ROWS]
    rows.append(("time (s)", lambda r: f"{r.seconds:.2f}"))
    lines += ["| " + label + " | " + " | ".join(get(r) for r in results) + " |"
              for label, get in rows]
    notes = {f"{label}: {reason}" for r in results for key, label, _ in METRIC_ROWS
             if (reason := r.metrics["undefined"].get(key))}
    return "\n".join(lines) + "".join(f"\n\nn/a {n}" for n in sorted(notes))


def _cell(value: float | None, fmt: str) -> str:
    return fmt.format(value) if value is not None and math.isfinite(value) else "n/a"


def decode_token_file(path, codecs: dict[str, Codec], out_dir: Path, max_seconds: float
                      ) -> DecodeResult:
    """Decode an uploaded .atok with the served codec that made it. The file's own codec_ref is
    not followed: it names a path on someone else's machine."""
    path = Path(path)
    try:
        header = read_header(path)
        seconds = max(header["num_samples"]) / int(header["spec"]["sample_rate"])
        if seconds > max_seconds:
            raise TokenFileError(f"{path}: tokens for {seconds:.1f} s of audio; this demo "
                                 f"decodes at most {max_seconds:g} s (--max-seconds)")
        tokens = Tokens.load(path)
    except AudiotokError as e:
        raise TokenFileError(user_message(e, path)) from None
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:  # fields missing or odd
        raise TokenFileError(f"{path.name}: corrupt token header ({type(e).__name__}: {e})"
                             ) from None
    name = _matching_codec(tokens, codecs, path.name)
    codec = codecs[name]
    items = tokens.codes.shape[0]
    note = f"The file holds {items} items; this is the first." if items > 1 else ""
    tokens = replace(tokens, codes=tokens.codes[:1], lengths=tokens.lengths[:1],
                     num_samples=tokens.num_samples[:1],
                     global_codes=None if tokens.global_codes is None
                     else tokens.global_codes[:1])
    wav = codec.decode(tokens.to(next(codec.parameters()).device))[0].float().cpu()
    audio = out_dir / f"{_safe(path.stem)}.wav"
    save_audio(audio, wav, codec.output_sample_rate)
    return DecodeResult(name, tokens, audio, wav.mean(0).double().numpy(),
                        codec.output_sample_rate, note)


def _at_input_rate(codec: Codec, rec: torch.Tensor) -> torch.Tensor:
    """A reconstruction [C, T] at the rate of the reference it is shown and scored beside
    (NeuCodec decodes 16 kHz input to 24 kHz)."""
    if codec.output_sample_rate == codec.sample_rate:
        return rec
    from ..audio import resample

    out = resample(rec.numpy(), codec.output_sample_rate, codec.sample_rate)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def _matching_codec(tokens: Tokens, codecs: dict[str, Codec], filename: str) -> str:
    for name, codec in codecs.items():
        try:
            codec.check_tokens(tokens)
        except TokenFileError:
            continue
        return name
    raise TokenFileError(f"{filename}: made by codec {tokens.spec.describe()}, which this demo "
                         f"does not serve (serving: {', '.join(codecs)})")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60] or "clip"


# ---------------------------------------------------------------------------- images
def spectrogram_images(signals: list[tuple[np.ndarray, int, str]]) -> list[np.ndarray]:
    """(mono wav [T], sample_rate, title) -> RGB images uint8 [H, W, 3] of log-magnitude
    spectrograms, all on the first signal's colour scale (its peak and 80 dB below), so a
    reconstruction is seen against its reference rather than rescaled to look alike."""
    dbs = [_stft_db(wav, sr) for wav, sr, _ in signals]
    top = float(dbs[0].max())
    images = []
    for db, (wav, sr, title) in zip(dbs, signals):
        fig, ax = _figure(6.0, 2.6)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                  extent=(0, len(wav) / sr, 0, sr / 2000), interpolation="nearest")
        ax.set(xlabel="time (s)", ylabel="kHz", title=title)
        images.append(_render(fig))
    return images


def _stft_db(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """dB magnitudes [F, frames] with a ~32 ms window at any rate, scaled by the window's sum
    so that codecs at different rates share one colour scale (a full-scale sine is ~0 dB)."""
    n_fft = 2 ** round(math.log2(0.032 * sample_rate))
    x = torch.from_numpy(np.asarray(wav, dtype=np.float32))
    window = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True)
    return (20 * torch.log10(2 * spec.abs() / window.sum() + 1e-7)).numpy()


def token_grid_image(codes: torch.Tensor, codebook_sizes: list[int], frame_rate: float,
                     title: str = "") -> np.ndarray:
    """codes long [K, T'] as an RGB image uint8 [H, W, 3]: one row per codebook level (level 0
    at the top), one column per frame, colour = code index / codebook size."""
    k, frames = codes.shape
    sizes = torch.tensor(codebook_sizes[:k], dtype=torch.float32)[:, None]
    grid = (codes.float() / (sizes - 1).clamp(min=1)).numpy()
    fig, ax = _figure(12.0, max(2.2, 1.3 + 0.22 * k))  # room for the axis label
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                   extent=(0, frames / frame_rate, k - 0.5, -0.5))
    ax.set(xlabel="time (s)", ylabel="codebook level",
           title=title or f"{k} codebooks x {frames} frames at {frame_rate:g} Hz")
    ax.set_yticks(range(k))
    fig.colorbar(im, ax=ax, pad=0.01, label="code / size")
    return _render(fig)


def _figure(width: float, height: float):
    """A matplotlib figure outside pyplot: no global state, safe in the server's threads."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _render(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
