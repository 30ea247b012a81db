"""`audiotok encode`, `decode`, `info` and `convert`."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ..codec_backend import open_codec
from ..errors import AudiotokError
from .argtypes import nonneg_int, positive_float, positive_int
from .codec_options import CODEC_HELP, add_backend
from .per_file import for_each, output_paths

TOKEN_SUFFIX = ".atok"


def add_encode_decode_info(sub) -> None:
    enc = sub.add_parser("encode", help="audio files -> token files (.atok)",
                         description="Encode audio files to token files. Any sample rate and "
                         "channel count is converted to what the codec needs.")
    enc.add_argument("audio", nargs="+", type=Path, help="wav/flac/ogg/mp3 files")
    enc.add_argument("-o", "--output", type=Path, required=True,
                     help="output .atok file (one input) or directory")
    enc.add_argument("--codec", default=None, help=CODEC_HELP)
    enc.add_argument("--n-codebooks", type=positive_int, default=None,
                     help="keep the first K codebook levels (lower bitrate); default all")
    _add_common(enc)
    enc.set_defaults(func=cmd_encode)

    dec = sub.add_parser("decode", help="token files -> audio files",
                         description="Decode token files back to audio with the codec that "
                         "made them (recorded in the file) or the one given.")
    dec.add_argument("tokens", nargs="+", type=Path, help=".atok files")
    dec.add_argument("-o", "--output", type=Path, required=True,
                     help="output audio file (.wav/.flac, one input) or directory")
    dec.add_argument("--codec", default=None, help="override the codec recorded in the file")
    dec.add_argument("--format", default="wav", choices=["wav", "flac"],
                     help="audio format when writing into a directory (default wav)")
    dec.add_argument("--steps", type=positive_int, default=None,
                     help="diffusion decoders (tadicodec): sampling steps (default: as the "
                     "token file records)")
    dec.add_argument("--seed", type=nonneg_int, default=None,
                     help="diffusion decoders: noise seed; the same seed gives the same audio")
    dec.add_argument("--text", default=None,
                     help="diffusion decoders conditioned on text: the transcript")
    dec.add_argument("--prompt", type=Path, default=None,
                     help="diffusion decoders: audio of the utterance's start, given clean")
    _add_common(dec)
    dec.set_defaults(func=cmd_decode)

    info = sub.add_parser("info", help="describe a codec or a token file",
                          description="Print a codec's spec and bitrates, or a token file's.")
    info.add_argument("target", nargs="?", help="codec (directory, recipe, name) or .atok file")
    info.add_argument("--list", action="store_true",
                      help="list codec names: bundled, published (rate, codebooks, kbps, "
                      "licence, source) and untrained families")
    info.set_defaults(func=cmd_info)

    conv = sub.add_parser(
        "convert", help="a published codec's checkpoint -> an audiotok checkpoint directory",
        description="Read a codec in its publisher's own format (e.g. descript-audio-codec's "
        "weights_16khz.pth, a transformers DacModel folder, a short name such as dac_16khz) "
        "and write audiotok's checkpoint (config.json + model.safetensors) with its "
        "provenance: source file, sha256, licence and the package whose outputs it matches.")
    conv.add_argument("source", help="checkpoint file or folder, short name or hub id")
    conv.add_argument("-o", "--output", type=Path, required=True, help="new checkpoint folder")
    conv.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                      help="store weights at this precision (float16: half the size)")
    conv.set_defaults(func=cmd_convert)


def _add_common(p) -> None:
    p.add_argument("--chunk-seconds", type=positive_float, default=10.0,
                   help="process long audio in chunks of this many seconds (bounded memory)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    add_backend(p)


def cmd_encode(args) -> int:
    from ..audio import load_audio

    codec = open_codec(args.codec, args.device, args.backend)
    codec.quantizer.check_n_codebooks(args.n_codebooks)
    outs = output_paths(args.audio, args.output, TOKEN_SUFFIX)

    def work(src: Path, dst: Path) -> None:
        wav, _ = load_audio(src, codec.sample_rate, codec.channels)
        tokens = codec.encode(wav[None].to(args.device), args.n_codebooks,
                              chunk_seconds=args.chunk_seconds)
        tokens.meta["source"] = src.name
        tokens.save(dst)

    return for_each(args.audio, outs, work, "encode")


def cmd_decode(args) -> int:
    from ..audio import load_audio, save_audio
    from ..codecs import Codec
    from ..tokens import Tokens

    outs = output_paths(args.tokens, args.output, "." + args.format)
    codecs: dict = {}
    # given only when asked for: deterministic decoders refuse them
    sampling = {k: v for k, v in (("steps", args.steps), ("seed", args.seed),
                                  ("text", args.text)) if v is not None}

    def work(src: Path, dst: Path) -> None:
        tokens = Tokens.load(src)
        ref = args.codec or tokens.codec_ref
        if ref is None:
            raise AudiotokError(f"{src}: the file does not say which codec made it; "
                                f"pass --codec")
        if ref not in codecs:
            codecs[ref] = open_codec(ref, args.device, args.backend)
        codec = codecs[ref]
        try:
            codec.check_tokens(tokens)
        except AudiotokError as e:
            raise AudiotokError(f"{src}: {e}") from None
        if args.prompt is not None:
            prompt, _ = load_audio(args.prompt, codec.sample_rate, codec.channels)
            sampling["prompt"] = prompt[None].expand(tokens.codes.shape[0], -1, -1)
        if sampling and not isinstance(codec, Codec):
            raise AudiotokError(f"{', '.join(sampling)}: an ONNX export decodes "
                                f"deterministically; these options need the torch codec")
        wav = codec.decode(tokens, chunk_seconds=args.chunk_seconds, **sampling)
        for i in range(wav.shape[0]):
            target = dst if wav.shape[0] == 1 else dst.with_name(f"{dst.stem}_{i}{dst.suffix}")
            length = codec.output_samples(int(tokens.num_samples[i]))
            save_audio(target, wav[i, :, :length], codec.output_sample_rate)

    return for_each(args.tokens, outs, work, "decode")


def cmd_info(args) -> int:
    from ..tokens import MAGIC

    if args.list or not args.target:
        _print_codec_list()
        return 0
    path = Path(args.target)
    if path.is_file():
        with open(path, "rb") as f:
            is_tokens = f.read(len(MAGIC)) == MAGIC
        if is_tokens:
            _print_tokens_info(path)
            return 0
    _print_codec_info(open_codec(args.target, "cpu"))
    return 0


def _print_tokens_info(path: Path) -> None:
    """From the header alone (the payload's checksum is verified block by block), so a
    large file is never held in memory."""
    from ..tokens import CodecSpec, read_header

    h = read_header(path, verify_payload=True)
    s = CodecSpec.from_dict(h["spec"])
    k = h["shape"][1]
    print(f"token file      {path}")
    print(f"codec           {s.describe()}  ref: {h.get('codec_ref')}")
    print(f"shape [B,K,T]   {h['shape']}")
    print(f"duration        {', '.join(f'{n / s.sample_rate:.2f} s' for n in h['num_samples'])}")
    print(f"frames          {h['lengths']}  at {s.frame_rate:g} Hz")
    print(f"codebooks used  {k} of {len(s.codebook_sizes)} "
          f"(sizes {list(s.codebook_sizes[:k])})")
    print(f"tokens/second   {s.tokens_per_second(k):g}")
    print(f"bitrate         {s.bitrate(k) / 1000:.3f} kbps")
    if "global_shape" in h:  # per-utterance codes (FreeCodec's timbre): not in the bitrate
        sizes = list(s.global_codebook_sizes[:h["global_shape"][1]])
        print(f"global codes    {len(sizes)} per utterance (sizes {sizes}, "
              f"{sum(math.log2(n) for n in sizes):g} bits each)")


def _print_codec_list() -> None:
    from ..codecs.loading import bundled_models
    from ..codecs.presets import PRESETS
    from ..codecs.published.names import NAMES

    print("bundled (trained, offline)")
    for name in bundled_models():
        print(f"  {name}")
    print("published (from the Hugging Face cache; `audiotok convert` for a local copy)")
    width = max(len(n) for n in NAMES)
    lic = max(len("licence"), *(len(n.licence) for n in NAMES.values()))
    print(f"  {'name':<{width}} {'rate':>6} {'frames/s':>8} {'codebooks':>9} {'kbps':>6}  "
          f"{'licence':<{lic}} source")
    for n in NAMES.values():
        print(f"  {n.name:<{width}} {n.sample_rate:>6} {n.frame_rate:>8.2f} "
              f"{f'{n.n_codebooks}x{n.codebook_size}':>9} {n.kbps:>6.2f}  {n.licence:<{lic}} "
              f"{n.source} ({n.repo})")
    # the presets (codecs/presets.py) are named after their families; the heading is as it was
    print("families (untrained weights, for training)")
    print("  " + " ".join(sorted(PRESETS)))


def cmd_convert(args) -> int:
    import torch

    from ..codecs import load_codec

    out = args.output
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AudiotokError(f"{out} exists and is not an empty folder; pick another -o")
    codec = load_codec(args.source)
    if codec.provenance is None:
        raise AudiotokError(f"{args.source}: not a published checkpoint (convert reads "
                            f"publishers' formats; audiotok checkpoints need no conversion)")
    dtype = torch.float16 if args.dtype == "float16" else None
    codec.save_pretrained(out, dtype=dtype)
    p = codec.provenance
    print(f"audiotok: wrote {out} ({codec.spec.describe()}, {args.dtype}) from {p['format']} "
          f"{p['source']} (sha256 {p['sha256'][:12]}; matches {p['matches']}; licence "
          f"{p['licence']})", file=sys.stderr)
    return 0


def _print_codec_info(codec) -> None:
    from ..quantizers.base import encodable_counts

    s = codec.spec
    print(f"codec           {codec.ref}")
    print(f"family          {s.family}")
    print(f"sample rate     {s.sample_rate} Hz, {s.channels} channel(s)")
    print(f"frame rate      {s.frame_rate:g} Hz (hop {s.hop_length} samples)")
    print(f"codebooks       {len(s.codebook_sizes)} x {sorted(set(s.codebook_sizes))} entries")
    if s.level_strides:
        print(f"level strides   {list(s.level_strides)} frames per code (coarsest first)")
    if hasattr(codec, "manifest"):  # an ONNX export (export/onnx_codec.py)
        m = codec.manifest
        print(f"runtime         onnxruntime: ONNX opset {m['opset']} graphs of "
              f"{m['source']}{', with streaming step graphs' if codec.streams else ''}")
    else:
        print(f"parameters      {sum(p.numel() for p in codec.parameters()) / 1e6:.2f} M")
    print(f"fingerprint     {s.fingerprint}")
    if codec.provenance:
        p = codec.provenance
        print(f"published as    {p['format']}: {p['source']} (sha256 {p['sha256'][:12]})")
        print(f"licence         {p['licence']}")
        print(f"matches         {p['matches']}")
    print("n_codebooks  tokens/s  kbps")
    for k in encodable_counts(codec.quantizer):  # lfq, bsq, gsq: all codebooks only
        print(f"{k:>11}  {s.tokens_per_second(k):>8g}  {s.bitrate(k) / 1000:>6.3f}")
