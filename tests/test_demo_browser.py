"""`audiotok demo` end to end in a real headless Chromium (Playwright): the command serves two
tiny codecs on a free local port; the tests upload and record clips, run them, compare by ear
(A/B), decode token files, feed bad inputs and send requests at once.

A screenshot of the page after a successful run is kept as tests/artifacts/demo.png.

Needs Debian's `chromium` and the `playwright` package (scripts/setup.sh installs both; no
browser is downloaded); skipped with the reason when either is missing.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf
import torch
from conftest import TINY, speechlike

import audiotok
from audiotok import Codec
from audiotok.tokens import Tokens

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                               "(pip install -c constraints.txt -e '.[dev]')")
CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                 "(apt-get install chromium, done by scripts/setup.sh)")]
expect = sync_api.expect

ARTIFACTS = Path(__file__).parent / "artifacts"
SPEECH = Path(audiotok.__file__).parent / "assets" / "examples" / "listen_en_us.flac"
MAX_SECONDS = 4
TIMEOUT_MS = 60_000  # one run takes well under a second; the rest is slack for a busy CPU
TINY_16K = {
    "family": "tiny-demo", "sample_rate": 16000, "latent_dim": 16,
    "encoder": {"type": "seanet", "n_filters": 4, "strides": [2, 4, 5, 8], "lstm_layers": 0},
    "quantizer": {"type": "rvq", "n_codebooks": 4, "codebook_size": 64, "codebook_dim": 4,
                  "l2_normalize": True},
    "decoder": {"type": "seanet", "n_filters": 4, "strides": [8, 5, 4, 2], "lstm_layers": 0},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two saved codecs (16 kHz at 50 Hz, 8 kHz) and the clips the tests upload."""
    d = tmp_path_factory.mktemp("demo")
    for name, config in (("tiny16k", TINY_16K), ("tiny8k", TINY["seanet-conv"])):
        torch.manual_seed(0)
        Codec.from_config(dict(config)).eval().save_pretrained(d / name)
    sf.write(str(d / "speech.wav"), speechlike(2.0, 16000), 16000)
    sf.write(str(d / "too_long.flac"), speechlike(MAX_SECONDS + 1.0, 16000), 16000)
    (d / "notes.wav").write_text("this is a text file with an audio name\n")
    (d / "empty.wav").write_bytes(b"")
    (d / "garbage.atok").write_bytes(b"ATOK but then nothing a token file needs")
    return d


@pytest.fixture(scope="module")
def server(files):
    """`audiotok demo` in a subprocess on a free port -> its URL; always stopped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "-m", "audiotok", "demo", "--codec", str(files / "tiny16k"),
               "--codec", str(files / "tiny8k"), "--port", str(port),
               "--max-seconds", str(MAX_SECONDS)]
    url = f"http://127.0.0.1:{port}/"
    with open(files / "server.log", "w+") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_until_serving(url, proc, log)
            yield url
        finally:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop that removes its temp files
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_serving(url: str, proc: subprocess.Popen, log, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"audiotok demo exited with {proc.returncode}:\n{log.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"audiotok demo did not serve {url} within {timeout} s")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        # A fake microphone (a beep) and auto-granted permission, for the recording test.
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  permissions=["microphone"])
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    pg.goto(server)
    yield pg
    context.close()


def upload(page, clip: Path) -> None:
    """Put `clip` into the input player, replacing what was there, and wait until it landed."""
    loaded = page.locator("#clip a[download]")  # the player's download link: an uploaded clip
    if loaded.count():
        page.locator("#clip button[aria-label='Clear']").click()
        expect(loaded).to_have_count(0)
    page.locator("#clip input[type=file]").set_input_files(str(clip))
    expect(loaded).to_have_attribute("href", re.compile(f".*/{re.escape(clip.name)}$"))


def upload_and_run(page, clip: Path) -> None:
    upload(page, clip)
    page.locator("#run").click()


def test_upload_run_shows_reconstruction_tokens_and_metrics(page, files, server):
    """Upload, pick 2 of 4 codebooks, run: both players, the token image, the metrics and
    the downloads appear, and the token file served for download has 2 codebooks."""
    page.locator("#listen-codebooks input[type=number]").fill("2")
    page.locator("#listen-codebooks input[type=number]").press("Enter")
    expect(page.locator("#listen-hint")).to_contain_text("2 of 4")
    upload_and_run(page, SPEECH)
    expect(page.locator("#status")).to_contain_text("tiny16k at 2 codebooks (0.60 kbps)",
                                                    timeout=TIMEOUT_MS)
    recon = page.locator("#reconstruction a[download]")
    expect(recon).to_have_attribute("href", re.compile(r".*listen_en_us.tiny16k.2cb.wav$"))
    original = page.locator("#original a[download]")
    expect(original).to_have_attribute("href", re.compile(r".*listen_en_us.reference.wav$"))
    grid = page.locator("#token-grid img")
    expect(grid).to_be_visible()
    assert page.evaluate("img => img.naturalWidth", grid.element_handle()) > 500
    for text in ("0.60", "100", "SI-SDR", "PESQ-WB", "STOI"):
        expect(page.locator("#metrics")).to_contain_text(text)
    expect(page.locator("#downloads")).to_contain_text(".atok")
    atok = page.locator("#downloads a[download$='.atok']").get_attribute("href")
    (files / "served.atok").write_bytes(page.request.get(atok).body())
    assert Tokens.load(files / "served.atok").codes.shape[:2] == (1, 2)
    wav = page.request.get(recon.get_attribute("href"))
    assert wav.ok and wav.body()[:4] == b"RIFF"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)


def test_microphone_recording_through_the_other_codec(page):
    page.locator("#listen-codec input").click()
    page.get_by_role("option", name="tiny8k").click()
    expect(page.locator("#listen-hint")).to_contain_text("4 of 4 codebooks: 19.20 kbps")
    page.locator("#clip button[aria-label='Record audio']").click()
    page.locator("#clip button.record-button").click()
    stop = page.locator("#clip button.stop-button")
    expect(stop).to_be_visible()  # recording has started: the second below is all recorded
    page.wait_for_timeout(1000)  # a second of the fake device's beep
    stop.click()
    expect(page.locator("#clip a[download]")).to_have_count(1)
    page.locator("#run").click()
    expect(page.locator("#status")).to_contain_text("tiny8k at 4 codebooks", timeout=TIMEOUT_MS)
    expect(page.locator("#reconstruction a[download]")).to_have_count(1)


def test_non_audio_upload_shows_error_and_server_keeps_serving(page, files):
    upload_and_run(page, files / "notes.wav")
    expect(page.locator("#status")).to_contain_text(
        "Error: notes.wav: cannot decode audio", timeout=TIMEOUT_MS)
    expect(page.locator("#reconstruction a[download]")).to_have_count(0)
    upload_and_run(page, files / "speech.wav")
    expect(page.locator("#status")).to_contain_text("tiny16k at 4 codebooks", timeout=TIMEOUT_MS)
    expect(page.locator("#token-grid img")).to_be_visible()


def test_empty_and_too_long_uploads_are_refused(page, files):
    upload_and_run(page, files / "empty.wav")
    expect(page.locator("#status")).to_contain_text("Error: empty.wav: file is empty",
                                                    timeout=TIMEOUT_MS)
    upload_and_run(page, files / "too_long.flac")
    expect(page.locator("#status")).to_contain_text(
        f"clip is {MAX_SECONDS + 1:.1f} s long; this demo takes clips of at most {MAX_SECONDS} s",
        timeout=TIMEOUT_MS)


def test_concurrent_requests_are_queued_and_all_succeed(browser, server):
    """Four users (pages: one Gradio session each) press Run at once; all get their result."""
    context = browser.new_context()  # shared HTTP cache: the page's assets load once
    context.set_default_timeout(TIMEOUT_MS)
    try:
        pages = [context.new_page() for _ in range(4)]
        for pg in pages:
            pg.goto(server, wait_until="commit")  # load them in parallel
        for pg in pages:
            upload(pg, SPEECH)
        for pg in pages:  # as close together as one driver can click
            pg.locator("#run").click()
        for pg in pages:
            expect(pg.locator("#status")).to_contain_text("tiny16k at 4 codebooks",
                                                          timeout=TIMEOUT_MS)
            expect(pg.locator("#token-grid img")).to_be_visible()
            expect(pg.locator("#reconstruction a[download]")).to_have_count(1)
    finally:
        context.close()


def test_example_ab_and_decode_tabs(page, files):
    """A bundled example through the two codecs side by side, then the decode tab on a good
    token file and on a corrupt one."""
    page.get_by_role("button", name="listen_en_us").click()
    clip = page.locator("#clip a[download]")
    expect(clip).to_have_attribute("href", re.compile(r".*listen_en_us.flac$"))
    page.get_by_role("tab", name="A/B").click()
    page.locator("#compare").click()
    status = page.locator("#ab-status")
    expect(status).to_contain_text("B: tiny8k at 4 codebooks", timeout=TIMEOUT_MS)
    expect(status).to_contain_text("A: tiny16k at 4 codebooks (1.20 kbps) on listen_en_us.flac")
    for side in ("a", "b"):
        expect(page.locator(f"#audio-{side} a[download]")).to_have_count(1)
    expect(page.locator("#ab-metrics")).to_contain_text("n/a PESQ-WB: needs 16 kHz audio")

    codec = Codec.from_pretrained(files / "tiny16k")
    wav, _ = sf.read(str(files / "speech.wav"), dtype="float32")
    codec.encode(torch.from_numpy(wav)[None, None], 3).save(files / "speech.atok")
    page.get_by_role("tab", name="Decode tokens").click()
    token_input = page.locator("#token-upload input[type=file]")
    token_input.set_input_files(str(files / "speech.atok"))
    page.locator("#decode").click()
    expect(page.locator("#decode-status")).to_contain_text(
        "Decoded speech.atok with tiny16k: 3 codebooks", timeout=TIMEOUT_MS)
    expect(page.locator("#decoded a[download]")).to_have_count(1)
    expect(page.locator("#decoded-grid img")).to_be_visible()
    page.locator("#token-upload button[aria-label='Clear']").click()
    token_input.set_input_files(str(files / "garbage.atok"))
    page.locator("#decode").click()
    expect(page.locator("#decode-status")).to_contain_text("Error: garbage.atok: ",
                                                           timeout=TIMEOUT_MS)
