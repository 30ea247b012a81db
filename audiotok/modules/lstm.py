"""LSTM over time with a skip connection, as SEANet places after its last downsampling."""

from torch import Tensor, nn


class SLSTM(nn.Module):
    """x [B, C, T] -> [B, C, T]; unidirectional, so causal; its receptive field is unbounded.

    `bidirectional` (SpeechTokenizer's encoder): [B, C, T] -> [B, 2C, T], both directions'
    outputs side by side, and the skip adds the input to each half."""

    def __init__(self, dim: int, num_layers: int = 2, skip: bool = True,
                 bidirectional: bool = False):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers, bidirectional=bidirectional)
        self.bidirectional = bidirectional
        # zero biases: random gate biases give every frame the same offset, which swamps the
        # small latents of an untrained encoder (see modules/conv.py)
        for name, param in self.lstm.named_parameters():
            if name.startswith("bias"):
                nn.init.zeros_(param)
        self.skip = skip

    def forward(self, x: Tensor) -> Tensor:
        seq = x.permute(2, 0, 1)  # [T, B, C]
        y, _ = self.lstm(seq)
        if self.skip:
            y = y + (seq.repeat(1, 1, 2) if self.bidirectional else seq)
        return y.permute(1, 2, 0)
