"""Codec presets: a default model config per codec family, named after it, that
`load_codec(name)` builds untrained.

Sizes here are moderate defaults for a 16 kHz speech codec; the published full-size designs
live in recipes/designs/.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    # EnCodec-like: SEANet conv + LSTM, RVQ with quantizer dropout, 50 Hz at 16 kHz
    "seanet": {
        "family": "seanet", "sample_rate": 16000, "latent_dim": 128,
        "encoder": {"type": "seanet", "n_filters": 32, "strides": [2, 4, 5, 8]},
        "quantizer": {"type": "rvq", "n_codebooks": 8, "codebook_size": 1024,
                      "quantizer_dropout": 1.0},
        "decoder": {"type": "seanet", "n_filters": 32, "strides": [8, 5, 4, 2]},
    },
    # DAC-like: snake activations, factorised 8-dim l2-normalised codes
    "dac": {
        "family": "dac", "sample_rate": 16000, "latent_dim": 256,
        "encoder": {"type": "dac", "d_model": 32, "strides": [2, 4, 5, 8]},
        "quantizer": {"type": "rvq", "n_codebooks": 12, "codebook_size": 1024,
                      "codebook_dim": 8, "l2_normalize": True, "quantizer_dropout": 0.5},
        "decoder": {"type": "dac", "channels": 512, "strides": [8, 5, 4, 2]},
    },
    # WavTokenizer-like: one 4096-entry codebook, SEANet encoder, Vocos decoder with attention
    "wavtokenizer": {
        "family": "wavtokenizer", "sample_rate": 16000, "latent_dim": 256,
        "encoder": {"type": "seanet", "n_filters": 32, "strides": [2, 4, 5, 8]},
        "quantizer": {"type": "vq", "codebook_size": 4096, "kmeans_init": True,
                      "dead_code_threshold": 2.0},
        "decoder": {"type": "vocos", "dim": 384, "intermediate_dim": 1152, "num_layers": 8,
                    "attention": True},
    },
    # Mimi-like (Moshi, Defossez et al. 2024): causal SEANet + windowed causal transformer,
    # 25 Hz -> 12.5 Hz, split semantic/acoustic RVQ; streams exactly (codec.stream()).
    # Mimi proper: 64 filters, transformer 512 x 8 layers, 2048-entry 256-dim codebooks
    # (Kyutai's trained Mimi is the published name "mimi").
    "mimi-like": {
        "family": "mimi", "sample_rate": 24000, "latent_dim": 256,
        "encoder": {"type": "mimi", "n_filters": 32, "strides": [4, 5, 6, 8], "downsample": 2,
                    "transformer": {"dim": 256, "layers": 4, "heads": 4,
                                    "dim_feedforward": 1024, "context": 250}},
        "quantizer": {"type": "split_rvq", "n_semantic": 1, "n_codebooks": 8,
                      "codebook_size": 2048, "codebook_dim": 64, "quantizer_dropout": 0.5},
        "decoder": {"type": "mimi", "n_filters": 32, "strides": [8, 6, 5, 4], "downsample": 2,
                    "transformer": {"dim": 256, "layers": 4, "heads": 4,
                                    "dim_feedforward": 1024, "context": 250}},
    },
}
