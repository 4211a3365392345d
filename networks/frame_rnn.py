"""A full-band BLSTM over STFT frames: a score backbone that is cheap on a CPU.

`forward(x: (B, C_in, F, T), t: (B,)) -> (B, C_out, F, T)`, the interface of
:class:`networks.ncsnpp.NCSNpp`, so :class:`networks.score_model.STFTScoreModel`
wraps either. Each frame's ``C_in * F`` values are projected to ``hidden``
features, modulated by the time embedding (FiLM: ``h * (1 + a(t)) + b(t)``),
run through ``n_layers`` bidirectional LSTM layers with residual connections,
and projected back to ``C_out * F`` values. A per-bin linear map of the input
channels (a 1x1 convolution) is added to the output, so the local part of the
score (``-x / sigma^2`` and the like) does not have to pass the frame bottleneck.
Where a U-Net sees a few hundred milliseconds through its 3x3 convolutions, every
output frame here depends on the whole utterance, which is what tells two
speakers apart; a step costs a small fraction of a tiny NCSN++'s.

With ``conv_channels > 0`` a small convolutional front end runs first over the
time-frequency plane (a 3x3 convolution shifted by the time embedding, then a 5x3
convolution dilated by 2 along frequency, SiLU after each) and its feature maps are
stacked onto the input: both the frame projection and the per-bin skip then see
local patterns (harmonics, onsets) that a per-bin linear map cannot form.
"""

import torch
import torch.nn.functional as F
from torch import nn

from networks.layers.embeddings import GaussianFourierProjection, require_positive_t


class FrameBLSTM(nn.Module):
    """Full-band BLSTM score backbone; see the module docstring.

    With ``scale_by_sigma`` the output is divided by ``t`` (NCSN++ divides its last
    feature map, which comes to the same for its linear output layer). The time
    embedding is the Gaussian Fourier projection of ``log t``, so ``t`` must be > 0.
    """

    def __init__(
        self,
        num_channels_in: int = 6,
        num_channels_out: int = 4,
        n_freqs: int = 256,
        hidden: int = 256,
        n_layers: int = 2,
        embed_dim: int = 64,
        fourier_scale: float = 16.0,
        dropout: float = 0.0,
        scale_by_sigma: bool = True,
        conv_channels: int = 0,
    ):
        super().__init__()
        for name, value in (("num_channels_in", num_channels_in),
                            ("num_channels_out", num_channels_out), ("n_freqs", n_freqs),
                            ("hidden", hidden), ("n_layers", n_layers), ("embed_dim", embed_dim)):
            if value < 1:
                raise ValueError(f"FrameBLSTM {name} must be >= 1, got {value}")
        if conv_channels < 0:
            raise ValueError(f"FrameBLSTM conv_channels must be >= 0, got {conv_channels}")
        if embed_dim % 2:
            raise ValueError(f"FrameBLSTM embed_dim must be even, got {embed_dim}")
        self.c_in, self.c_out, self.n_freqs = num_channels_in, num_channels_out, n_freqs
        self.hidden, self.n_layers, self.scale_by_sigma = hidden, n_layers, scale_by_sigma

        self.fourier = GaussianFourierProjection(embed_dim // 2, fourier_scale)
        self.temb = nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.SiLU(),
                                  nn.Linear(4 * embed_dim, 4 * embed_dim), nn.SiLU())
        # one (scale, shift) pair per LSTM layer input and one for the output features
        self.film = nn.ModuleList(nn.Linear(4 * embed_dim, 2 * hidden) for _ in range(n_layers))
        self.film_out = nn.Linear(4 * embed_dim, 2 * hidden)
        self.conv_channels = conv_channels
        c_feat = num_channels_in + conv_channels
        if conv_channels:
            self.conv1 = nn.Conv2d(num_channels_in, conv_channels, 3, padding=1)
            self.conv_t = nn.Linear(4 * embed_dim, conv_channels)
            self.conv2 = nn.Conv2d(conv_channels, conv_channels, (5, 3), padding=(4, 1),
                                   dilation=(2, 1))
        self.inp = nn.Linear(c_feat * n_freqs, hidden)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(n_layers))
        self.rnns = nn.ModuleList(
            nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True) for _ in range(n_layers)
        )
        self.proj = nn.ModuleList(nn.Linear(2 * hidden, hidden) for _ in range(n_layers))
        self.dropout = nn.Dropout(dropout)
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, num_channels_out * n_freqs)
        self.skip = nn.Conv2d(c_feat, num_channels_out, kernel_size=1)
        # The FiLM layers start at the identity. The output layers keep their random
        # initialisation: the inverse of the magnitude compression, |Y| ** (1 / alpha),
        # has a zero derivative at Y = 0, so a zero output would get no gradient.
        for film in (*self.film, self.film_out):
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)

    LAYER_PARTS = ("film", "norms", "rnns", "proj")  # the modules of one BLSTM layer

    def load_shallower(self, state_dict: dict) -> int:
        """Load the ``state_dict`` of a FrameBLSTM of the same settings but fewer layers
        (to train a network deeper from a trained one): its layers become this one's
        first ones and each extra layer starts as the identity, its output projection
        zeroed (the residual connection passes the features on), so this network
        computes exactly what the loaded one did. Returns the number of layers added."""
        n = len({k.split(".")[1] for k in state_dict if k.startswith("rnns.")})
        if not 1 <= n <= self.n_layers:
            raise ValueError(f"cannot grow a FrameBLSTM of {n} layers into one of "
                             f"{self.n_layers}")

        def extra(key):
            part, _, rest = key.partition(".")
            return part in self.LAYER_PARTS and int(rest.split(".")[0]) >= n

        missing = [k for k in self.state_dict() if k not in state_dict and not extra(k)]
        if missing:
            raise ValueError(f"the FrameBLSTM to grow from lacks {missing[:4]}: another "
                             "configuration than this one's apart from n_layers")
        self.load_state_dict({**self.state_dict(), **state_dict})  # strict: shapes, names
        with torch.no_grad():
            for proj in self.proj[n:]:
                proj.weight.zero_()
                proj.bias.zero_()
        return self.n_layers - n

    def _check_input(self, x: torch.Tensor, t: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.c_in or x.shape[2] != self.n_freqs:
            raise ValueError(
                f"FrameBLSTM expects x of shape (B, {self.c_in}, {self.n_freqs}, T), got "
                f"{tuple(x.shape)} (set n_freqs = n_fft // 2 + 1 of the STFT)"
            )
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        require_positive_t(t, "FrameBLSTM needs t > 0 (it embeds log t and may divide by t)")

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._check_input(x, t)
        B, _, Fq, T = x.shape
        temb = self.temb(self.fourier(torch.log(t)))  # (B, 4 embed_dim)
        if self.conv_channels:
            c = F.silu(self.conv1(x) + self.conv_t(temb)[:, :, None, None])
            x = torch.cat([x, F.silu(self.conv2(c))], dim=1)
        h = self.inp(x.permute(0, 3, 1, 2).reshape(B, T, x.shape[1] * Fq))  # (B, T, hidden)
        for film, norm, rnn, proj in zip(self.film, self.norms, self.rnns, self.proj):
            scale, shift = film(temb)[:, None, :].chunk(2, dim=-1)
            u = norm(h) * (1 + scale) + shift
            u, _ = rnn(u)
            h = h + self.dropout(proj(u))
        scale, shift = self.film_out(temb)[:, None, :].chunk(2, dim=-1)
        h = F.silu(self.out_norm(h) * (1 + scale) + shift)
        y = self.out(h).reshape(B, T, self.c_out, Fq).permute(0, 2, 3, 1) + self.skip(x)
        if self.scale_by_sigma:
            y = y / t[:, None, None, None]
        return y
