"""CDiffuse-style waveform score network (DiffWave residual stack conditioned on the mixture).

`forward(x: (B, K, L), t: (B,), mix: (B, 1, L)) -> (B, K, L)`.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from networks.layers.embeddings import require_positive_t, sinusoidal_embedding


class ResidualLayer(nn.Module):
    """Dilated conv + time bias + mixture conditioner, gated tanh * sigmoid, residual/skip."""

    def __init__(self, channels: int, dilation: int, temb_dim: int):
        super().__init__()
        self.time_proj = nn.Linear(temb_dim, channels)
        self.dilated = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.cond = nn.Conv1d(1, 2 * channels, 1)
        self.out = nn.Conv1d(channels, 2 * channels, 1)
        nn.init.kaiming_normal_(self.dilated.weight)
        nn.init.kaiming_normal_(self.cond.weight)
        nn.init.kaiming_normal_(self.out.weight)

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor, mix: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.dilated(x + self.time_proj(temb)[:, :, None]) + self.cond(mix)
        gate, filt = y.chunk(2, dim=1)
        residual, skip = self.out(torch.sigmoid(gate) * torch.tanh(filt)).chunk(2, dim=1)
        return (x + residual) / math.sqrt(2.0), skip


class CDiffuse(nn.Module):
    """DiffWave stack: n_layers residual layers with dilation 2 ** (i % dilation_cycle).

    The time embedding is sinusoidal of `1000 log t` ("log") or of `1000 t` ("linear")
    (periods up to 10^4, so the factor 1000 resolves about 1e-3), then a two-layer SiLU
    MLP. With `scale_by_sigma` the output is divided by t.
    """

    def __init__(
        self,
        n_sources: int = 2,
        residual_channels: int = 64,
        n_layers: int = 30,
        dilation_cycle: int = 10,
        embedding_dim: int = 128,
        time_embedding: str = "log",
        scale_by_sigma: bool = False,
    ):
        super().__init__()
        if time_embedding not in ("log", "linear"):
            raise ValueError(f"time_embedding must be 'log' or 'linear', got {time_embedding!r}")
        if n_layers < 1 or dilation_cycle < 1:
            raise ValueError(
                f"need n_layers, dilation_cycle >= 1, got {n_layers}, {dilation_cycle}"
            )
        self.n_sources = n_sources
        self.embedding_dim = embedding_dim
        self.time_embedding = time_embedding
        self.scale_by_sigma = scale_by_sigma
        temb_dim = 4 * embedding_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(embedding_dim, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim), nn.SiLU()
        )
        self.input_proj = nn.Conv1d(n_sources, residual_channels, 1)
        self.layers = nn.ModuleList(
            ResidualLayer(residual_channels, 2 ** (i % dilation_cycle), temb_dim)
            for i in range(n_layers)
        )
        self.skip_proj = nn.Conv1d(residual_channels, residual_channels, 1)
        self.output_proj = nn.Conv1d(residual_channels, n_sources, 1)
        # zero output at init, as in DiffWave: training starts from a null score
        nn.init.zeros_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.n_sources or mix.shape != (x.shape[0], 1, x.shape[2]):
            raise ValueError(
                f"CDiffuse expects x (B, {self.n_sources}, L) and mix (B, 1, L), "
                f"got {tuple(x.shape)} and {tuple(mix.shape)}"
            )
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        if self.time_embedding == "log":
            require_positive_t(t, "CDiffuse with time_embedding='log' needs t > 0")
            v = 1000.0 * torch.log(t)
        else:
            v = 1000.0 * t
        temb = self.time_mlp(sinusoidal_embedding(v, self.embedding_dim))
        h = F.relu(self.input_proj(x))
        skip = torch.zeros_like(h)
        for layer in self.layers:
            h, s = layer(h, temb, mix)
            skip = skip + s
        h = F.relu(self.skip_proj(skip / math.sqrt(len(self.layers))))
        out = self.output_proj(h)
        if self.scale_by_sigma:
            out = out / t[:, None, None]
        return out
