"""`audiotok probe`: what frozen codec tokens are good for, measured by training small models
on them (not to be confused with `distill/probe.py`, the per-level mutual information of codes
with SSL units that `audiotok eval --probe-units` reports, which trains nothing).

    data.py          labelled clips from JSONL manifests, checked for the task
    features.py      the probed systems: codec tokens per codebook count, log-mel baseline
    heads.py         DASB-style light heads: level embeddings (attention-combined), BiLSTM
                     or TDNN, pooled classes or CTC
    downstream.py    train a head on one system, score it (accuracy, CER)
    run.py           the downstream probe over every system
    lm_layouts.py    audiotok.lm layouts (flatten, delay, group) as LM training streams
    lm_probe.py      a small causal transformer per layout, held-out bits per second
    report.py        the table, probe.json, probe.png
"""
