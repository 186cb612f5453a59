"""Conditional LSTM: neutral code z0 + smile class (+ noise) → one latent sequence z1 … zT.

The recurrence is explicit: ``step(z_prev, cls, noise, state) -> (z_t, state)`` is the only place
the LSTM runs, and ``unroll`` loops it, so training, frame-by-frame runtime and ONNX export share
one function. The LSTM is written with explicit gates (``LSTMStack``: MatMul, Add, Sigmoid, Tanh,
Mul, Slice, Concat only), which export to ONNX opset 17 and TensorRT without an LSTM op.

Each step predicts a residual, z_t = z_prev + delta; the output head starts small, so an untrained
model stays near z0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: Recurrent state (h, c), each (layers, B, hidden).
LSTMState = tuple[Tensor, Tensor]

#: Initial scale of the residual heads' weights relative to PyTorch's default init.
HEAD_INIT_GAIN = 0.1


@dataclass(frozen=True)
class ConditionalConfig:
    """Conditional LSTM."""

    #: Size of the VAE latent code z.
    z_dim: int = 32
    #: Number of smile classes (``rt_smile.data.sequences.CLASSES``).
    n_classes: int = 2
    #: Size of the class embedding.
    class_dim: int = 16
    #: Size of the noise vector fed at every step.
    noise_dim: int = 16
    #: Draw one noise vector per sequence and feed it at every step (a latent "style" of the whole
    #: smile: amplitude, timing, lip parting), rather than fresh noise each step, which an LSTM
    #: trained by regression learns to ignore. Models trained with noise candidates use this.
    hold_noise: bool = False
    #: LSTM width.
    hidden: int = 256
    #: Stacked LSTM layers.
    layers: int = 1


class LSTMStack(nn.Module):
    """Stacked LSTM cells with explicit gates; one time step per call."""

    def __init__(self, input_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.hidden = hidden
        dims = [input_dim] + [hidden] * (layers - 1)
        self.gates = nn.ModuleList(nn.Linear(d + hidden, 4 * hidden) for d in dims)
        for lin in self.gates:
            assert isinstance(lin, nn.Linear)
            with torch.no_grad():
                lin.bias[hidden : 2 * hidden].fill_(1.0)  # forget gate open at init

    def forward(self, x: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """x (B, input_dim), state (h, c) each (layers, B, hidden) → (top h (B, hidden), state)."""
        h, c = state
        hs: list[Tensor] = []
        cs: list[Tensor] = []
        for i, lin in enumerate(self.gates):
            x, c_i = _lstm_cell(lin(torch.cat([x, h[i]], dim=-1)), c[i])
            hs.append(x)
            cs.append(c_i)
        return x, (torch.stack(hs), torch.stack(cs))


def _lstm_cell(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """gates (B, 4H) in order input, forget, cell, output; c (B, H) → (h, c) each (B, H)."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class StateInit(nn.Module):
    """Conditioning vector (B, D) → initial LSTM state (h, c), each (layers, B, hidden)."""

    def __init__(self, cond_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.layers, self.hidden = layers, hidden
        self.proj = nn.Linear(cond_dim, 2 * layers * hidden)

    def forward(self, cond: Tensor) -> LSTMState:
        hc = self.proj(cond).unflatten(-1, (2, self.layers, self.hidden))  # (B, 2, L, H)
        hc = hc.permute(1, 2, 0, 3)  # (2, L, B, H)
        return torch.tanh(hc[0]), hc[1]


def residual_head(hidden: int, out_dim: int) -> nn.Linear:
    """Linear head whose initial weights are scaled down by ``HEAD_INIT_GAIN``, bias zero."""
    head = nn.Linear(hidden, out_dim)
    with torch.no_grad():
        head.weight.mul_(HEAD_INIT_GAIN)
        head.bias.zero_()
    return head


class ConditionalLSTM(nn.Module):
    """z0, class and per-step noise → z1 … zT (residual steps in latent space)."""

    def __init__(self, config: ConditionalConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ConditionalConfig()
        self.class_embedding = nn.Embedding(cfg.n_classes, cfg.class_dim)
        self.init_state = StateInit(cfg.z_dim + cfg.class_dim, cfg.hidden, cfg.layers)
        self.lstm = LSTMStack(cfg.z_dim + cfg.class_dim + cfg.noise_dim, cfg.hidden, cfg.layers)
        self.head = residual_head(cfg.hidden, cfg.z_dim)

    def initial_state(self, z0: Tensor, cls: Tensor) -> LSTMState:
        """z0 (B, z), cls (B,) long → (h, c), each (layers, B, hidden)."""
        return self.init_state(torch.cat([z0, self.class_embedding(cls)], dim=-1))

    def step(self, z_prev: Tensor, cls: Tensor, noise: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """z_prev (B, z), cls (B,) long, noise (B, noise_dim), state → (z_t (B, z), state)."""
        x = torch.cat([z_prev, self.class_embedding(cls), noise], dim=-1)  # (B, z + class + noise)
        top, state = self.lstm(x, state)  # (B, hidden)
        return z_prev + self.head(top), state

    def unroll(self, z0: Tensor, cls: Tensor, noise: Tensor, teacher: Tensor | None = None) -> Tensor:
        """z0 (B, z), cls (B,), noise (B, T, noise_dim) → z1 … zT as (B, T, z); z0 is not included.

        Free-running by default (each step is fed its own previous output). With ``teacher``
        (B, T, z), the ground truth z1 … zT, step t is fed the true z_{t-1} instead (teacher forcing).
        """
        state = self.initial_state(z0, cls)
        z = z0
        out: list[Tensor] = []
        for t in range(noise.shape[1]):
            z_in = z if teacher is None or t == 0 else teacher[:, t - 1]
            z, state = self.step(z_in, cls, noise[:, t], state)
            out.append(z)
        return torch.stack(out, dim=1)

    def sample_noise(self, batch: int, steps: int, generator: torch.Generator | None = None) -> Tensor:
        """Standard normal noise (batch, steps, noise_dim) on this module's device: one draw per
        sequence repeated over the steps with ``config.hold_noise``, else one per step."""
        device = self.head.weight.device
        draws = 1 if self.config.hold_noise else steps
        noise = torch.randn(batch, draws, self.config.noise_dim, generator=generator, device=device)
        return noise.expand(batch, steps, -1).contiguous()
