"""The convolutions' inference fast path (modules/conv.py): weight norm folded once and kept
until a weight changes, transposed convs bit for bit with the plain path, channels-last
layers within float rounding, training and checkpoints untouched."""

import pytest
import torch

from audiotok.modules.conv import Conv1d, ConvTranspose1d, allow_reordered_sums

LAYERS = {
    "k7 dilated": lambda: Conv1d(8, 16, 7, dilation=3),
    "strided": lambda: Conv1d(8, 16, 8, stride=4),
    "causal reflect": lambda: Conv1d(8, 16, 5, causal=True, pad_mode="reflect"),
    "encodec padding": lambda: Conv1d(8, 16, 6, stride=3, pad_mode="reflect",
                                      extra_padding=True),
    "1x1 plain": lambda: Conv1d(8, 16, 1, norm="none"),
    "transposed": lambda: ConvTranspose1d(16, 8, 10, 5),
    "transposed trim": lambda: ConvTranspose1d(16, 8, 16, 8, trim=4),
    "transposed causal": lambda: ConvTranspose1d(16, 8, 4, 2, causal=True),
}


def _layer(name: str, exact: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    layer = LAYERS[name]().eval()
    with torch.no_grad():  # nonzero biases and norms other than 1
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    if not exact:
        allow_reordered_sums(layer)
    return layer


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("exact", [True, False])
def test_fast_path_matches_the_autograd_path(name, exact):
    layer = _layer(name, exact)
    c_in = 16 if name.startswith("transposed") else 8
    for length in (40, 124, 4):  # whole strides
        x = torch.randn(2, c_in, length)
        slow = layer(x)  # autograd on: the plain path
        with torch.inference_mode():
            fast = layer(x)
            again = layer(x)  # from the cached weight
        assert fast.shape == slow.shape
        assert torch.equal(fast, again)
        if exact or name.startswith("transposed"):  # same kernels: bit for bit
            assert torch.equal(fast, slow.detach())
        else:
            torch.testing.assert_close(fast, slow.detach(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["k7 dilated", "transposed"])
@pytest.mark.parametrize("exact", [True, False])
def test_the_folded_weight_follows_the_parameters(name, exact):
    layer = _layer(name, exact)
    x = torch.randn(1, 16 if name == "transposed" else 8, 50)
    with torch.no_grad():
        before = layer(x)
    # an optimizer step changes the parameters in place
    layer.train()
    layer(x).square().mean().backward()
    torch.optim.SGD(layer.parameters(), lr=0.5).step()
    layer.eval()
    with torch.inference_mode():
        after = layer(x)
    assert not torch.equal(after, before)
    torch.testing.assert_close(after, layer(x).detach(), rtol=0, atol=1e-5)
    # loading a checkpoint copies into the same tensors
    fresh = _layer(name, exact)
    fresh.load_state_dict({k: v + 0.05 for k, v in layer.state_dict().items()})
    layer.load_state_dict(fresh.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), fresh(x), rtol=0, atol=0)


def test_training_keeps_the_checkpoint_layout_and_drops_the_cache():
    layer = _layer("k7 dilated", True)
    keys = set(layer.state_dict())
    with torch.inference_mode():
        layer(torch.randn(1, 8, 30))
    assert layer.folded.weight is not None
    assert set(layer.state_dict()) == keys  # the folded weight is no parameter or buffer
    assert "conv.parametrizations.weight.original0" in keys
    layer.train()
    assert layer.folded.weight is None
    x = torch.randn(1, 8, 30, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and layer.conv.parametrizations.weight.original1.grad is not None
