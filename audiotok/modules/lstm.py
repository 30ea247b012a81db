"""LSTM over time with a skip connection, as SEANet places after its last downsampling."""

from torch import Tensor, nn

LSTMState = tuple[Tensor, Tensor]
"""Hidden and cell states, each [layers, B, C]."""


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
        return self.step(x)[0]

    def step(self, x: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        """Streaming form (unidirectional only): x [B, C, n] new frames and the state after
        the previous ones (None at the start) -> (y [B, C, n], state). Concatenated outputs
        equal `forward` on the whole, to float rounding."""
        if state is not None and self.bidirectional:
            raise ValueError("a bidirectional LSTM reads the future: it cannot stream")
        seq = x.permute(2, 0, 1)  # [T, B, C]
        y, state = self.lstm(seq, state)
        if self.skip:
            y = y + (seq.repeat(1, 1, 2) if self.bidirectional else seq)
        return y.permute(1, 2, 0), state
