"""The Gradio page behind `audiotok demo`: hear a clip through any codec at any bitrate next to
the original, with spectrograms, the token grid, metrics and downloads; an A/B tab for two
codecs or bitrates; a tab that decodes token files. The computing is in `core.py`; this file
lays out the page and turns every user error into a one-line status, so the server keeps
serving. It lives in the package (not only in the checkout's `demo/app.py`) so the installed
command finds it.

    demo = build_demo({"mine": "runs/tiny/model"}, max_seconds=30)
    demo.launch()                      # or launch(["runs/tiny/model"]), as `audiotok demo`
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

import gradio as gr

from ..codecs import Codec
from ..codecs.loading import is_untrained
from ..errors import AudiotokError
from ..eval.evaluate import codec_labels
from ..quantizers.base import encodable_counts
from .core import (
    ClipResult,
    bitrate_hint,
    bundled_examples,
    decode_token_file,
    default_codec_refs,
    metrics_markdown,
    new_request_dir,
    run_clip,
    spectrogram_images,
    token_grid_image,
    user_message,
)

# One request at a time: the codec already uses every core (torch threads), so parallel runs
# would only split them and multiply memory. Others wait in the queue, which is bounded so a
# flood is refused instead of piling up.
CONCURRENCY_ID = "codec"
QUEUE_SIZE = 64
# What the CLI reports as a one-line error is shown in the page the same way.
USER_ERRORS = (AudiotokError, ValueError, OSError, RuntimeError)


class DemoHandlers:
    """The page's callbacks over a fixed set of loaded codecs; each returns its outputs in the
    order the page wires them, with a Markdown status first."""

    def __init__(self, codecs: dict[str, Codec], max_seconds: float, work: Path):
        self.codecs, self.max_seconds, self.work = codecs, max_seconds, work

    def codec_changed(self, name: str, k: float) -> tuple[gr.Slider, str]:
        codec = self.codecs[name]
        k = _usable_count(codec, k)
        return gr.Slider(value=k, **_slider_range(codec)), bitrate_hint(codec, k)

    def codebooks_changed(self, name: str, k: float) -> str:
        return bitrate_hint(self.codecs[name], _usable_count(self.codecs[name], k))

    def listen(self, clip: str | None, name: str, k: float) -> tuple:
        """-> status, original, reconstruction, their spectrograms, token grid, metrics,
        downloads."""
        try:
            r = self._run(clip, name, k)
        except USER_ERRORS as e:
            return (_error(e), *[None] * 7)
        specs = spectrogram_images([(r.ref, r.sample_rate, ""), (r.rec, r.sample_rate, "")])
        grid = token_grid_image(r.codes, r.codebook_sizes, r.frame_rate)
        return (_done(r), str(r.reference), str(r.reconstruction), *specs, grid,
                metrics_markdown([r]), [str(r.token_file), str(r.reconstruction)])

    def compare(self, clip: str | None, name_a: str, k_a: float, name_b: str, k_b: float
                ) -> tuple:
        """-> status, original, A, B, their spectrograms, metrics of A and B."""
        try:
            a = self._run(clip, name_a, k_a)
            b = self._run(clip, name_b, k_b)
        except USER_ERRORS as e:
            return (_error(e), *[None] * 7)
        specs = spectrogram_images([(a.ref, a.sample_rate, "original"),
                                    (a.rec, a.sample_rate, f"A: {a.codec} @ {a.n_codebooks}"),
                                    (b.rec, b.sample_rate, f"B: {b.codec} @ {b.n_codebooks}")])
        status = f"A: {_done(a)}\n\nB: {_done(b)}"
        return (status, str(a.reference), str(a.reconstruction), str(b.reconstruction),
                *specs, metrics_markdown([a, b], ["A", "B"]))

    def decode(self, token_file: str | None) -> tuple:
        """-> status, decoded audio (the player offers the download), spectrogram, token grid."""
        if not token_file:
            return ("**Error:** upload a token file (.atok) first", None, None, None)
        try:
            d = decode_token_file(token_file, self.codecs, new_request_dir(self.work),
                                  self.max_seconds)
        except USER_ERRORS as e:
            return (_error(e, token_file), None, None, None)
        t, codec = d.tokens, self.codecs[d.codec]
        status = (f"Decoded `{Path(token_file).name}` with **{d.codec}**: "
                  f"{t.n_codebooks} codebooks, {t.bitrate / 1000:.2f} kbps, "
                  f"{int(t.num_samples[0]) / d.sample_rate:.2f} s. {d.note}")
        spec = spectrogram_images([(d.wav, d.sample_rate, "")])[0]
        grid = token_grid_image(t.codes[0, :, : int(t.lengths[0])], codec.codebook_sizes,
                                codec.frame_rate)
        return status, str(d.audio), spec, grid

    def _run(self, clip: str | None, name: str, k: float) -> ClipResult:
        if not clip:
            raise AudiotokError("upload or record a clip first (or click an example)")
        if name not in self.codecs:
            raise AudiotokError(f"unknown codec '{name}'")
        return run_clip(self.codecs[name], name, clip, int(k), new_request_dir(self.work),
                        self.max_seconds)


def _done(r: ClipResult) -> str:
    return (f"**{r.codec}** at {r.n_codebooks} codebooks ({r.metrics['kbps']:.2f} kbps) on "
            f"`{r.clip}` in {r.seconds:.2f} s")


def _error(e: Exception, upload: str | None = None) -> str:
    return f"**Error:** {user_message(e, Path(upload) if upload else None)}"


def build_demo(codecs: dict[str, Codec | str | Path], max_seconds: float = 60.0,
               examples: list[Path] | None = None, device: str = "cpu") -> gr.Blocks:
    """The page for `codecs` (label -> loaded codec, or a ref `load_codec` opens: checkpoint
    directory, recipe or name). `examples`: clips offered as one-click inputs (default: the
    bundled ones). Requests are queued and run one at a time."""
    from ..codec_backend import open_codec

    if not codecs:
        raise AudiotokError("the demo needs at least one codec")
    loaded = {name: c if isinstance(c, Codec) else open_codec(str(c), device)
              for name, c in codecs.items()}
    work = Path(tempfile.mkdtemp(prefix="audiotok-demo-"))
    atexit.register(shutil.rmtree, work, True)
    h = DemoHandlers(loaded, max_seconds, work)
    examples = bundled_examples() if examples is None else examples
    # delete_cache: Gradio's copies of served files older than an hour go every 10 minutes.
    with gr.Blocks(title="audiotok demo", analytics_enabled=False,
                   delete_cache=(600, 3600)) as demo:
        gr.Markdown("# audiotok: listen to codecs\nUpload or record a clip (or click an "
                    "example), pick a codec and a bitrate, and listen. Clips of up to "
                    f"{max_seconds:g} s.")
        for name, codec in loaded.items():
            if is_untrained(codec):
                gr.Markdown(f"**Note:** `{name}` has untrained weights (built from a recipe "
                            "or family name), so its reconstructions are noise. Start "
                            "`audiotok demo --codec CHECKPOINT_DIR` with a trained codec.")
        clip = gr.Audio(sources=["upload", "microphone"], type="filepath", elem_id="clip",
                        label="clip (used by Listen and A/B)", buttons=["download"])
        if examples:
            gr.Examples([[str(p)] for p in examples], inputs=[clip], label="example clips",
                        example_labels=[p.stem for p in examples])
        with gr.Tabs():
            with gr.Tab("Listen", id="listen"):
                _listen_tab(h, clip)
            with gr.Tab("A/B", id="ab"):
                _ab_tab(h, clip)
            with gr.Tab("Decode tokens", id="decode"):
                _decode_tab(h)
    return demo.queue(max_size=QUEUE_SIZE)


def _fewest_codebooks(codec: Codec) -> int:
    """The slider's low end: 1 for residual quantizers, K for those whose codebooks code
    parallel parts of a frame (lfq, bsq, gsq), which take all K or none."""
    return encodable_counts(codec.quantizer)[0]


def _slider_range(codec: Codec) -> dict:
    """Slider bounds for `codec`; a codec with one usable count (a single codebook, or lfq's
    all-or-none) gets a fixed slider (gradio needs minimum < maximum)."""
    lo, hi = _fewest_codebooks(codec), codec.n_codebooks
    if lo == hi:
        return {"minimum": hi - 1, "maximum": hi, "interactive": False}
    return {"minimum": lo, "maximum": hi, "interactive": True}


def _usable_count(codec: Codec, k: float) -> int:
    return min(max(int(k), _fewest_codebooks(codec)), codec.n_codebooks)


def _picker(h: DemoHandlers, label: str, name: str, k: int, elem: str
            ) -> tuple[gr.Dropdown, gr.Slider]:
    """A codec dropdown and a codebook-count slider whose range and bitrate hint follow it."""
    codec = h.codecs[name]
    dropdown = gr.Dropdown(list(h.codecs), value=name, label=label, elem_id=f"{elem}-codec")
    slider = gr.Slider(value=k, step=1, label="codebooks (bitrate)",
                       elem_id=f"{elem}-codebooks", **_slider_range(codec))
    hint = gr.Markdown(bitrate_hint(codec, k), elem_id=f"{elem}-hint")
    ui_only = {"queue": False, "api_visibility": "undocumented"}
    dropdown.change(h.codec_changed, [dropdown, slider], [slider, hint], **ui_only)
    slider.change(h.codebooks_changed, [dropdown, slider], hint, **ui_only)
    return dropdown, slider


def _audio_out(label: str, elem_id: str) -> gr.Audio:
    # No "share" button: it uploads to the Hugging Face hub, which a local demo should not.
    return gr.Audio(label=label, interactive=False, elem_id=elem_id, buttons=["download"])


def _image_out(label: str, elem_id: str | None = None) -> gr.Image:
    return gr.Image(label=label, format="png", interactive=False, elem_id=elem_id,
                    buttons=["download", "fullscreen"])


def _run_event(button: gr.Button, fn, inputs: list, outputs: list) -> None:
    # Named API endpoints ("Use via API"): the page can be scripted with gradio_client too.
    button.click(fn, inputs, outputs, concurrency_limit=1, concurrency_id=CONCURRENCY_ID,
                 api_name=fn.__name__)


def _player(label: str, elem_id: str) -> tuple[gr.Audio, gr.Image]:
    """A column with a player and its spectrogram below it."""
    with gr.Column():
        return _audio_out(label, elem_id), _image_out(label)


def _listen_tab(h: DemoHandlers, clip: gr.Audio) -> None:
    first = next(iter(h.codecs))
    with gr.Row():
        codec, k = _picker(h, "codec", first, h.codecs[first].n_codebooks, "listen")
    run = gr.Button("Run", variant="primary", elem_id="run")
    status = gr.Markdown(elem_id="status")
    with gr.Row():
        original, spec_original = _player("original", "original")
        recon, spec_recon = _player("reconstruction", "reconstruction")
    grid = _image_out("tokens (codebook level x frame)", "token-grid")
    with gr.Row():
        metrics = gr.Markdown(elem_id="metrics")
        downloads = gr.File(label="token file and reconstruction", file_count="multiple",
                            interactive=False, elem_id="downloads")
    _run_event(run, h.listen, [clip, codec, k],
               [status, original, recon, spec_original, spec_recon, grid, metrics, downloads])


def _ab_tab(h: DemoHandlers, clip: gr.Audio) -> None:
    names = list(h.codecs)
    a_name, b_name = names[0], names[-1]
    # With one codec, B defaults to half its codebooks: the same codec at a lower bitrate.
    k_a, k_b = h.codecs[a_name].n_codebooks, h.codecs[b_name].n_codebooks
    if a_name == b_name:
        k_b = max(1, k_b // 2)
    with gr.Row():
        with gr.Column():
            codec_a, slider_a = _picker(h, "codec A", a_name, k_a, "a")
        with gr.Column():
            codec_b, slider_b = _picker(h, "codec B", b_name, k_b, "b")
    run = gr.Button("Compare", variant="primary", elem_id="compare")
    status = gr.Markdown(elem_id="ab-status")
    with gr.Row():
        original, spec_original = _player("original", "ab-original")
        audio_a, spec_a = _player("A", "audio-a")
        audio_b, spec_b = _player("B", "audio-b")
    metrics = gr.Markdown(elem_id="ab-metrics")
    _run_event(run, h.compare, [clip, codec_a, slider_a, codec_b, slider_b],
               [status, original, audio_a, audio_b, spec_original, spec_a, spec_b, metrics])


def _decode_tab(h: DemoHandlers) -> None:
    gr.Markdown("Decode a token file (`.atok`, from `audiotok encode` or the Listen tab) with "
                "the served codec that made it.")
    upload = gr.File(label="token file (.atok)", elem_id="token-upload")
    run = gr.Button("Decode", variant="primary", elem_id="decode")
    status = gr.Markdown(elem_id="decode-status")
    audio = _audio_out("decoded", "decoded")
    with gr.Row():
        spec = _image_out("spectrogram")
        grid = _image_out("tokens", "decoded-grid")
    _run_event(run, h.decode, [upload], [status, audio, spec, grid])


def upload_limit(max_seconds: float) -> int:
    """Bytes an upload may have: enough for any uncompressed clip of the allowed duration
    (96 kHz, stereo, 32-bit), at least 50 MB; longer files are refused before they land."""
    return max(50 << 20, int(max_seconds * 96000 * 2 * 4))


def launch(codec_refs: list[str] | None = None, host: str = "127.0.0.1", port: int | None = None,
           max_seconds: float = 60.0, share: bool = False, device: str = "cpu") -> None:
    """Serve the page until interrupted; no `codec_refs`: the bundled model (or the tiny
    untrained recipe). Only this machine can connect unless `host` says otherwise."""
    refs = list(codec_refs or default_codec_refs())
    demo = build_demo(dict(zip(codec_labels(refs), refs)), max_seconds, device=device)
    # quiet: Gradio's own banner suggests `share=True` in code; say it in the CLI's terms.
    _, local_url, share_url = demo.launch(
        server_name=host, server_port=port, share=share, show_error=True, ssr_mode=False,
        max_file_size=upload_limit(max_seconds), quiet=True, prevent_thread_lock=True)
    public = f" and {share_url}" if share_url else " (--share for a public link)"
    print(f"audiotok: demo running at {local_url}{public}; Ctrl-C stops it", file=sys.stderr)
    demo.block_thread()
