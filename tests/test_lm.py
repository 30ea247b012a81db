"""LM token layouts: every map's inverse gives back exactly its input, bad input is refused."""

import itertools

import numpy as np
import pytest
import torch

from audiotok import lm

SHAPES = [(), (1,), (3,), (2, 2)]  # leading batch shapes


def random_codes(lead, sizes, frames, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, s, (*lead, frames), generator=g) for s in sizes], -2)


def cases():
    """Every small combination of batch shape, level count, frame count (incl. 0) and
    uneven codebook sizes."""
    for n, (lead, k, frames) in enumerate(itertools.product(SHAPES, [1, 2, 3, 5], [0, 1, 4])):
        sizes = [2 + (7 * i + n) % 9 for i in range(k)]
        yield lead, sizes, random_codes(lead, sizes, frames, n)


def test_flatten_round_trip_and_layout():
    for lead, sizes, codes in cases():
        for offset in (0, 17):
            tokens = lm.flatten(codes, sizes, offset)
            assert tokens.shape == (*lead, codes.shape[-1] * len(sizes))
            assert torch.equal(lm.unflatten(tokens, sizes, offset), codes)
            # frame-major, per-level offsets: one id per (level, code)
            starts = lm.level_offsets(sizes, offset)
            if codes.shape[-1]:
                k = len(sizes) - 1
                assert tokens[..., k].equal(codes[..., k, 0] + starts[k])
    codes = torch.tensor([[1, 2], [0, 3]])
    assert lm.flatten(codes, [4, 4]).tolist() == [1, 4, 2, 7]


def test_unflatten_refuses_tokens_of_the_wrong_level():
    tokens = lm.flatten(torch.tensor([[1, 2], [0, 3]]), [4, 4])
    with pytest.raises(ValueError, match="level 1"):
        lm.unflatten(tokens[[0, 0, 2, 3]], [4, 4])  # a level-0 id where level 1 belongs
    with pytest.raises(ValueError, match="multiple of 2"):
        lm.unflatten(tokens[:3], [4, 4])
    with pytest.raises(ValueError, match="outside"):
        lm.flatten(torch.tensor([[4]]), [4])


def test_delay_round_trip_and_pattern():
    for lead, sizes, codes in cases():
        pad = max(sizes)
        for delays in (None, list(reversed(range(len(sizes)))), [2] * len(sizes)):
            delayed = lm.delay(codes, pad, delays)
            shifts = delays or list(range(len(sizes)))
            assert delayed.shape[-1] == codes.shape[-1] + max(shifts)
            assert torch.equal(lm.undelay(delayed, pad, delays), codes)
    codes = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert lm.delay(codes, pad=0).tolist() == [[1, 2, 3, 0, 0], [0, 4, 5, 6, 0],
                                               [0, 0, 7, 8, 9]]


def test_undelay_checks_the_padding():
    delayed = lm.delay(torch.tensor([[1, 2], [3, 4]]), pad=9)
    delayed[1, 0] = 5
    with pytest.raises(ValueError, match="pad token"):
        lm.undelay(delayed, pad=9)
    with pytest.raises(ValueError, match="fewer than"):
        lm.undelay(torch.zeros(3, 1, dtype=torch.long))


def test_group_round_trip():
    for lead, sizes, codes in cases():
        k = len(sizes)
        for groups in {(k,), (1,) * k, (1, k - 1) if k > 1 else (1,)}:
            streams = lm.group(codes, groups, sizes, offset=5)
            assert [s.shape[-1] for s in streams] == [codes.shape[-1] * g for g in groups]
            assert torch.equal(lm.ungroup(streams, groups, sizes, offset=5), codes)
            # ids are global: the same as flattening all levels, level by level
            assert torch.equal(torch.cat(streams, -1).sort(-1).values,
                               lm.flatten(codes, sizes, 5).sort(-1).values)
    with pytest.raises(ValueError, match="sum to 3"):
        lm.group(random_codes((), [2, 2, 2], 3, 0), [1, 1], [2, 2, 2])


def test_text_audio_vocab_round_trip():
    vocab = lm.TextAudioVocab(text_size=100, codebook_sizes=(8, 4, 4))
    assert vocab.size == 116
    names = vocab.token_names()
    assert len(names) == 16 and names[0] == "<|a0_0|>" and names[8] == "<|a1_0|>"
    for lead, _, codes in cases():
        codes = random_codes(lead, [8, 4, 4], codes.shape[-1], 1)
        ids = vocab.encode(codes)
        assert bool(((ids >= 100) & (ids < 116)).all())
        assert torch.equal(vocab.decode(ids), codes)
        # each id names its (level, code) in token_names
        flat = lm.flatten(codes, [8, 4, 4]).reshape(-1)
        assert [names[i - 100] for i in ids.reshape(-1).tolist()] == [
            names[i] for i in flat.tolist()]
    mixed = torch.cat([torch.tensor([5, 99]), vocab.encode(torch.tensor([[7], [3], [0]]))])
    assert vocab.is_audio(mixed).tolist() == [False, False, True, True, True]
    with pytest.raises(ValueError):
        vocab.decode(torch.tensor([5, 101, 110]))  # a text id among audio ids


def test_numpy_in_numpy_out():
    codes = np.array([[1, 2], [3, 0]], dtype=np.uint16)  # as read from a shard
    tokens = lm.flatten(codes, [4, 4])
    assert isinstance(tokens, np.ndarray) and tokens.dtype == np.int64
    assert np.array_equal(lm.unflatten(tokens, [4, 4]), codes)
    assert np.array_equal(lm.undelay(lm.delay(codes, 9), 9), codes)
    with pytest.raises(ValueError, match="integer"):
        lm.flatten(codes.astype(np.float32), [4, 4])


# -- multi-rate codecs (SNAC) -------------------------------------------------------------------

def repeated(levels, strides):
    return torch.stack([lv.repeat_interleave(s, -1) for lv, s in zip(levels, strides)], -2)


def test_tree_order_is_depth_first():
    from audiotok.lm import tree_order

    # SNAC 24 kHz: l0, then under it l1 and its two l2, then the second l1 and its two l2
    assert tree_order([4, 2, 1]) == [(0, 0), (1, 0), (2, 0), (2, 1), (1, 2), (2, 2), (2, 3)]
    assert len(tree_order([8, 4, 2, 1])) == 15
    with pytest.raises(ValueError, match="multiple of the next"):
        tree_order([4, 3, 1])


@pytest.mark.parametrize("strides", [(4, 2, 1), (8, 4, 2, 1), (1, 1)])
def test_flatten_tree_round_trip_each_code_once(strides):
    from audiotok.lm import flatten_tree, unflatten_tree

    g = torch.Generator().manual_seed(len(strides))
    sizes = [4096] * len(strides)
    groups = 5
    levels = [torch.randint(0, 4096, (2, groups * max(strides) // s), generator=g)
              for s in strides]
    codes = repeated(levels, strides)
    tokens = flatten_tree(codes, sizes, strides, offset=10)
    assert tokens.shape == (2, sum(lv.shape[-1] for lv in levels))  # no repeats left
    first = {k: [] for k in range(len(strides))}  # each level's codes, in the tokens' order
    for t in tokens[0].tolist():
        k = (t - 10) // 4096
        first[k].append(t - 10 - 4096 * k)
    assert all(first[k] == levels[k][0].tolist() for k in first)
    assert torch.equal(unflatten_tree(tokens, sizes, strides, offset=10), codes)
    back = unflatten_tree(tokens.numpy(), sizes, strides, offset=10)  # numpy in, numpy out
    assert isinstance(back, np.ndarray) and (back == codes.numpy()).all()


def test_flatten_tree_refuses_what_it_cannot_invert():
    from audiotok.lm import flatten_tree, unflatten_tree

    strides, sizes = (4, 2, 1), [16] * 3
    codes = repeated([torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long),
                      torch.arange(8)[None]], strides)
    with pytest.raises(ValueError, match="whole groups of 4"):
        flatten_tree(codes[..., :6], sizes, strides)
    broken = codes.clone()
    broken[0, 1, 1] = 5  # level 1 no longer repeats its code
    with pytest.raises(ValueError, match="level 1 does not repeat"):
        flatten_tree(broken, sizes, strides)
    with pytest.raises(ValueError, match="multiple of 7 codes"):
        unflatten_tree(torch.zeros(1, 13, dtype=torch.long), sizes, strides)
    with pytest.raises(ValueError, match="outside"):
        unflatten_tree(torch.full((1, 7), 47), sizes, strides)  # past the last level's ids
