"""Networks: autoencoders and the Student-t clustering head they share.

Encoders map a batch ``(B, ...)`` to an embedding ``(B, d)``; decoders map it back to the
input's shape. Each method builds the one its paper uses.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MLPAutoencoder(nn.Module):
    """Fully connected autoencoder ``dims[0]-dims[1]-...-dims[-1]`` and its mirror.

    ReLU between layers, linear embedding and linear output (DEC/IDEC). The input may be
    images: they are flattened, and the decoder's output is reshaped to ``input_shape``.
    """

    def __init__(self, dims: list[int], input_shape: tuple[int, ...] | None = None):
        super().__init__()
        if len(dims) < 2:
            raise ValueError(f"dims needs at least input and embedding sizes; got {dims}")
        self.dims = list(dims)
        self.input_shape = tuple(input_shape) if input_shape else (dims[0],)
        if math.prod(self.input_shape) != dims[0]:
            raise ValueError(f"input_shape {self.input_shape} does not match dims[0]={dims[0]}")
        self.encoder = _mlp(dims)
        self.decoder = _mlp(dims[::-1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, dims[-1])."""
        return self.encoder(x.reshape(x.shape[0], -1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, dims[-1]) -> (B, *input_shape)."""
        return self.decoder(z).reshape(z.shape[0], *self.input_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decode(z)


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def student_t(z: torch.Tensor, centers: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Soft assignment q_ij ∝ (1 + ||z_i - mu_j||² / alpha)^(-(alpha + 1) / 2)  (DEC eq 1).

    z: (B, d), centers: (k, d); returns (B, k), rows summing to 1.
    """
    d2 = torch.cdist(z, centers).pow(2)
    logits = -(alpha + 1.0) / 2.0 * torch.log1p(d2 / alpha)
    return torch.softmax(logits, dim=1)


class StudentTHead(nn.Module):
    """Trainable cluster centres ``(k, d)`` with the Student-t soft assignment."""

    def __init__(self, centers: torch.Tensor, alpha: float = 1.0):
        super().__init__()
        self.centers = nn.Parameter(torch.as_tensor(centers, dtype=torch.float32).clone())
        self.alpha = float(alpha)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return student_t(z, self.centers, self.alpha)


class SiameseCNN(nn.Module):
    """ADC's backbone (Sun et al. 2022, Fig. 2), shared by both branches of the Siamese net.

    Three stages of 3×3 convolutions (stride 1, padding 1) + ReLU, each closed by a 2×2
    max-pool; a final (global) average pool; a fully connected layer to ``dim``.
    ``widths``: channels per stage; ``convs``: convolutions per stage.
    (B, c, h, w) float32 -> (B, dim).
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128),
                 dim: int = 10, convs: int = 1):
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"widths gives the channels of the 3 stages; got {widths}")
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            for _ in range(convs):
                layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU()]
                c = w
            layers.append(nn.MaxPool2d(2))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, dim)
        self.dim = dim
        self.to(memory_format=torch.channels_last)  # about 2x faster convolutions on CPUs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x.contiguous(memory_format=torch.channels_last)))


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder of DECS (and ConvDEC-DA, whose code DECS builds on).

    Encoder: three blocks ``conv 3×3 (same) → ReLU → BatchNorm → max-pool 2×2``, a fourth
    ``conv 3×3 → ReLU → BatchNorm`` (``valid`` padding when the side is not a multiple of 8,
    as in the authors' code), then a linear layer to the ``embed_dim`` embedding. The
    decoder mirrors it with stride-2 transposed convolutions. ``channels`` defaults to the
    paper's (32, 64, 128, 256). Input (B, C, H, W) with H, W >= 8; embedding (B, embed_dim).
    """

    def __init__(self, input_shape: tuple[int, int, int], embed_dim: int = 10,
                 channels: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width); got {input_shape}")
        c, h, w = (int(v) for v in input_shape)
        if h < 8 or w < 8:
            raise ValueError(f"ConvAutoencoder needs images of at least 8×8 pixels (three "
                             f"2×2 poolings); got {h}×{w}: use the MLP autoencoder instead")
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"channels needs four positive widths; got {channels}")
        self.input_shape = (c, h, w)
        self.embed_dim = int(embed_dim)
        self.channels = tuple(int(v) for v in channels)
        c1, c2, c3, c4 = self.channels
        valid = h % 8 != 0
        sh, sw = h // 8, w // 8  # side after three poolings
        oh, ow = (sh - 2, sw - 2) if valid else (sh, sw)
        if oh < 1 or ow < 1:
            raise ValueError(f"images of {h}×{w} are too small for this encoder")
        self.encoder = nn.Sequential(
            *_conv_block(c, c1), nn.MaxPool2d(2),
            *_conv_block(c1, c2), nn.MaxPool2d(2),
            *_conv_block(c2, c3), nn.MaxPool2d(2),
            *_conv_block(c3, c4, padding=0 if valid else 1),
            nn.Flatten(), nn.Linear(c4 * oh * ow, self.embed_dim))
        self._hidden = (c4, sh, sw)
        self.decoder = nn.Sequential(
            nn.Linear(self.embed_dim, c4 * sh * sw), nn.ReLU(),
            nn.Unflatten(1, (c4, sh, sw)),
            *_deconv_block(c4, c3, output_padding=0 if valid else 1, padding=0 if valid else 1),
            *_deconv_block(c3, c2), *_deconv_block(c2, c1),
            nn.Conv2d(c1, c, 3, padding=1))
        # 1.1-1.6x faster steps on a CPU (benchmarks/bench_channels_last.py)
        self.to(memory_format=torch.channels_last)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, embed_dim)."""
        return self.encoder(x.contiguous(memory_format=torch.channels_last))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) -> (B, C, H, W)."""
        x = self.decoder(z)
        if tuple(x.shape[-2:]) != self.input_shape[1:]:  # sides that are not 8k or 8k+4
            x = nn.functional.interpolate(x, size=self.input_shape[1:], mode="bilinear",
                                          align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decode(z)


def _conv_block(a: int, b: int, padding: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(a, b, 3, padding=padding), nn.ReLU(), nn.BatchNorm2d(b)]


def _deconv_block(a: int, b: int, padding: int = 1, output_padding: int = 1) -> list[nn.Module]:
    return [nn.ConvTranspose2d(a, b, 3, stride=2, padding=padding,
                               output_padding=output_padding), nn.ReLU(), nn.BatchNorm2d(b)]


def softmax_distance(z: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """ClusterNet eq 16, as log-probabilities: log softmax_k(-||z_i - mu_k||²).

    z: (B, d), centers: (k, d); returns (B, k) log p_ik (``.exp()`` rows sum to 1).
    """
    d2 = (z.pow(2).sum(1, keepdim=True) - 2 * z @ centers.T + centers.pow(2).sum(1)).clamp_min(0)
    return torch.log_softmax(-d2, dim=1)


def dropout_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted-dropout multipliers for ``x``: 0 with probability ``p``, else ``1 / (1 - p)``.

    Same shape and dtype as ``x``. Each element's draw is a 16-bit lane of 64-bit random
    words from torch's default generator (four elements per draw), so ``p`` is rounded to a
    multiple of 1/65536 (0.1 → 0.100006). On a CPU this is several times cheaper than
    ``bernoulli_``, which draws one number per element (benchmarks/bench_dropout.py).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1); got {p}")
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, None)
    lanes = words.view(torch.int16)[:n].view(x.shape)  # uniform over [-32768, 32767]
    keep = lanes >= -32768 + round(p * 65536)
    return keep.to(x.dtype).mul_(1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the cheaper CPU mask of :func:`dropout_mask` (on a GPU, and in
    eval mode, exactly ``nn.Dropout``). In ClusterNet's autoencoder ``bernoulli_`` took 30 %
    of a CPU training step; with this mask the step is 1.24× faster on 2 threads."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.p >= 1.0:
            return super().forward(x)
        m = dropout_mask(x, self.p)
        return x.mul_(m) if self.inplace else x * m


class ClusterNetAE(nn.Module):
    """ClusterNet's convolutional autoencoder (Shukla et al., §5.1; seed 001).

    Encoder: three convolutions with ``channels`` (32, 64, 128) filters, stride 2 (kernels
    5, 5, 3), each followed by InstanceNorm and LeakyReLU, then a fully connected layer to
    ``latent`` (32) units with tanh. The decoder mirrors it (fully connected + tanh, then
    transposed convolutions back to ``input_shape``, linear output). Dropout ``dropout``
    (10 %) after every layer except the decoder's last. Works for any image size of at
    least 8 × 8 (28 × 28 MNIST, 16 × 16 USPS, 32 × 32 ...).

    x: (B, c, h, w) float32 -> z: (B, latent) in (-1, 1) -> x_hat: (B, c, h, w).
    """

    def __init__(self, input_shape: tuple[int, int, int], channels: tuple[int, ...] = (32, 64, 128),
                 latent: int = 32, dropout: float = 0.1, kernels: tuple[int, ...] = (5, 5, 3)):
        super().__init__()
        if len(input_shape) != 3 or min(input_shape[1:]) < 8:
            raise ValueError(f"ClusterNetAE needs images (c, h, w) of at least 8 x 8; got "
                             f"input_shape={tuple(input_shape)} (use MLPAutoencoder for vectors)")
        if len(kernels) != len(channels):
            raise ValueError(f"one kernel size per conv layer: {kernels} vs {channels}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent = int(latent)
        c, h, w = self.input_shape
        enc: list[nn.Module] = []
        dec: list[nn.Module] = []
        sizes = [(h, w)]
        chans = [c, *channels]
        for i, k in enumerate(kernels):
            hh, ww = sizes[-1]
            # 'same' padding for odd k, except a last small kernel on a big map ('valid')
            pad = 0 if (k == 3 and min(hh, ww) >= 7) else k // 2
            st = 2 if min(hh, ww) >= 4 else 1  # keep InstanceNorm more than one pixel
            enc += [nn.Conv2d(chans[i], chans[i + 1], k, stride=st, padding=pad),
                    nn.InstanceNorm2d(chans[i + 1]), nn.LeakyReLU(0.2), Dropout(dropout)]
            sizes.append(((hh + 2 * pad - k) // st + 1, (ww + 2 * pad - k) // st + 1))
            dec.insert(0, (chans[i + 1], chans[i], k, pad, st, (hh, ww)))
        self.conv_shape = (chans[-1], *sizes[-1])
        flat = math.prod(self.conv_shape)
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, latent), nn.Tanh())
        layers: list[nn.Module] = [nn.Linear(latent, flat), nn.Tanh(), Dropout(dropout),
                                   nn.Unflatten(1, self.conv_shape)]
        in_size = sizes[-1]
        for j, (cin, cout, k, pad, st, (hh, ww)) in enumerate(dec):
            op = (hh - ((in_size[0] - 1) * st - 2 * pad + k),
                  ww - ((in_size[1] - 1) * st - 2 * pad + k))
            layers.append(nn.ConvTranspose2d(cin, cout, k, stride=st, padding=pad,
                                             output_padding=op))
            if j < len(dec) - 1:
                layers += [nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2), Dropout(dropout)]
            in_size = (hh, ww)
        self.decoder = nn.Sequential(*layers)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c, h, w) -> (B, latent)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent) -> (B, c, h, w)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decode(z)
