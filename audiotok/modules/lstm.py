"""LSTM over time with a skip connection, as SEANet places after its last downsampling."""

from torch import Tensor, nn


class SLSTM(nn.Module):
    """x [B, C, T] -> [B, C, T]; unidirectional, so causal; its receptive field is unbounded."""

    def __init__(self, dim: int, num_layers: int = 2, skip: bool = True):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)
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
            y = y + seq
        return y.permute(1, 2, 0)
