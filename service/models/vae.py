"""Variational auto-encoder (exercise 5), as the assignment's MLP and as a convolutional variant."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import ClassVar

import torch
from torch import nn

from .autoencoder import conv_decoder, conv_encoder, make_activation
from .losses import sample_range, to_intensities
from .prior import LabelPrior


def kl_divergence(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """
    KL divergence of each diagonal Gaussian from the standard normal prior.

    Parameters
    ----------
    mean, log_var : (N, code_features) Tensor
        The latent Gaussians' means and log-variances.

    Returns
    -------
    kl : (N,) Tensor
        ``KL(N(mean, exp(log_var)) || N(0, I))``, summed over the latent dimensions.
    """
    kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp())
    return kl.flatten(1).sum(1)


class VariationalAutoEncoder(nn.Module):
    """Variational auto-encoder, trained against a standard normal prior.

    Parameters
    ----------
    encoder : nn.Module
        Maps inputs (N, ...) to (N, 2 * code_features): the latent mean and log-variance, in
        that order along dimension 1.
    decoder : nn.Module
        Maps latent codes (N, code_features) to logits shaped like the inputs.
    assumption : str, optional
        How logits become intensities; see ``service.models.losses``.
    prior : LabelPrior, optional
        A prior fitted to the aggregate posterior after training, one Gaussian per label, that
        ``sample_prior`` draws from; without it new codes come from N(0, I).
    pixel_temperature : float, optional
        The temperature ``generate`` renders pixels at (``decode``'s ``pixel_temperature``); a
        binomial or binary VAE only, as only their pixels are Bernoulli.
    """

    @staticmethod
    def sample(
        mean: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """
        Sample randomly from the latent space in a differentiable manner.

        Parameters
        ----------
        mean : (N, code_features) Tensor
            Mean(s) for sampling new images.
        log_var : (N, code_features) Tensor
            Logarithm of variance(s) for sampling new images.
        generator : torch.Generator, optional
            Source of the noise, for reproducible samples; it may live on another device.

        Returns
        -------
        sample : (N, code_features) Tensor
            The randomly generated sample in latent space.
        """
        mean = torch.as_tensor(mean)
        noise_device = generator.device if generator is not None else mean.device
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=noise_device)
        # reparameterisation trick: the noise is the only non-differentiable part
        return mean + torch.exp(0.5 * torch.as_tensor(log_var)) * eps.to(mean.device)

    @staticmethod
    def regularisation(parameters: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """
        Compute regularisation loss.

        Parameters
        ----------
        parameters : (Tensor, Tensor)
            Mean and log_var predictions (N, code_features) from the forward pass.

        Returns
        -------
        kl_div : () Tensor
            The Kullback-Leibler divergence between the Gaussian distribution specified by
            `parameters` and a standard normal, summed over latent dimensions and averaged
            over the batch.
        """
        mean, log_var = parameters
        return kl_divergence(mean, log_var).mean()

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        assumption: str | None = None,
        prior: LabelPrior | None = None,
        pixel_temperature: float = 1.0,
    ):
        super().__init__()
        check_pixel_temperature(pixel_temperature, assumption)
        self.assumption = assumption
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.pixel_temperature = pixel_temperature

    def sample_prior(
        self,
        n: int,
        features: int,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Draw ``n`` latent codes (n, features) from the prior, on the generator's device.

        The fitted ``prior`` when there is one (``labels`` (n,) pick its components), else
        N(0, I), which takes no labels.
        """
        if self.prior is not None:
            return self.prior.sample(n, generator, labels)
        if labels is not None:
            raise ValueError("this VAE has no labelled prior, so it takes no labels")
        device = generator.device if generator is not None else None
        return torch.randn(n, features, generator=generator, device=device)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, ...) inputs -> mean and log-variance, each (N, code_features)."""
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        return mean, log_var

    def forward(self, x: torch.Tensor):
        """
        Parameters
        ----------
        x : (N, ...) torch.Tensor
            The inputs to the forward pass.

        Returns
        -------
        y : (N, ...) torch.Tensor
            The logits computed from `x`. In training mode they decode a sample from the latent
            distribution; in eval mode they decode its mean, so reconstructions are repeatable.
        parameters : tuple of (N, code_features) torch.Tensor
            The parameters for the latent distribution.
            This is used to compute the regularisation.
        """
        mean, log_var = self.encode(x)
        z = self.sample(mean, log_var) if self.training else mean
        return self.decoder(z), (mean, log_var)

    @torch.no_grad()
    def decode(
        self,
        z: torch.Tensor,
        y_range: tuple | None = None,
        pixel_temperature: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        """
        Latent codes (N, code_features) -> intensities in [0, 1], shaped like the inputs.

        ``pixel_temperature`` (a number or one per code, (N,)) divides a binomial decoder's
        logits: each pixel becomes the mean of its Bernoulli tempered to ``p^(1/T) / (p^(1/T) +
        (1 - p)^(1/T))``. Below 1 every pixel moves towards the side (0 or 1) the decoder favours,
        which undoes the blur its mean puts on the stroke edges it is unsure of; 1 is the mean.
        """
        logits = self.decoder(z)
        t = torch.as_tensor(pixel_temperature, dtype=logits.dtype, device=logits.device)
        t = t.view(-1, *[1] * (logits.dim() - 1)) if t.dim() else t
        return to_intensities(logits / t, self.assumption, y_range)

    @torch.no_grad()
    def generate(
        self,
        mean: torch.Tensor,
        log_var: torch.Tensor = 0.0,
        y_range: tuple | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """
        Generate one or more new images.

        Parameters
        ----------
        mean : (N, code_features) Tensor
            Mean in latent space for generating images.
        log_var : (N, code_features) Tensor, optional
            Logarithm of variance(s) in latent space for generating images.
        y_range : (min, max), optional
            Output range for the ``gauss`` assumption.
        generator : torch.Generator, optional
            Source of the sampling noise, for reproducible images.

        Returns
        -------
        img : (N, ...) Tensor
            Image with the same dimensions as the inputs
            and pixel intensities in [0, 1].

        See Also
        --------
        `sample(mean, log_var)` : sample randomly in latent space.
        """
        device = next(self.decoder.parameters()).device
        mean = torch.as_tensor(mean).to(device)
        log_var = torch.as_tensor(log_var).to(device)
        z = self.sample(mean, log_var, generator)
        return self.decode(z, y_range, self.pixel_temperature)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct (N, ...) inputs to intensities in [0, 1]."""
        logits, _ = self.forward(x)
        return to_intensities(logits, self.assumption, sample_range(x))


def check_pixel_temperature(pixel_temperature: float, assumption: str | None) -> None:
    """ValueError unless ``pixel_temperature`` is positive, and 1 for a VAE whose pixels are not
    Bernoulli (``gauss``, ``truncated``)."""
    if not pixel_temperature > 0:
        raise ValueError(f"pixel_temperature must be positive, not {pixel_temperature}")
    if pixel_temperature != 1 and assumption not in ("binomial", "binary"):
        raise ValueError(
            f"pixel_temperature tempers Bernoulli pixels; a VAE assuming {assumption!r} has "
            "none, so it must be 1"
        )


class Residual(nn.Module):
    """``x + conv(act(conv(x)))``: two 3x3 convolutions that keep the channels and the size,
    the second initialised to zero."""

    def __init__(self, channels: int, activation: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            make_activation(activation),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        # each block starts as the identity, so that blocks train as stably as the plain layout
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CropTo(nn.Module):
    """Crop (N, C, H', W') to (N, C, height, width) from the top-left corner."""

    def __init__(self, height: int, width: int):
        super().__init__()
        self.height, self.width = height, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : self.height, : self.width]


@dataclass
class MLPVAEConfig:
    """The assignment's fully connected VAE (exercise 6): 784-hidden-latent and back."""

    architecture: ClassVar[str] = "mlp-vae"
    kind: ClassVar[str] = "vae"
    image_size: tuple[int, int] = (28, 28)
    in_channels: int = 1
    hidden_features: int = 400
    latent_features: int = 20
    activation: str = "elu"
    labels: tuple[str, ...] = ()
    prior_components: int = 1
    prior_temperature: float = 1.0
    pixel_temperature: float = 1.0

    def build(self, assumption: str | None = None) -> VariationalAutoEncoder:
        pixels = self.in_channels * self.image_size[0] * self.image_size[1]
        act = self.activation
        encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(pixels, self.hidden_features),
            make_activation(act),
            nn.Linear(self.hidden_features, 2 * self.latent_features),
        )
        decoder = nn.Sequential(
            nn.Linear(self.latent_features, self.hidden_features),
            make_activation(act),
            nn.Linear(self.hidden_features, pixels),
            nn.Unflatten(1, (self.in_channels, *self.image_size)),
        )
        return VariationalAutoEncoder(
            encoder, decoder, assumption, _prior(self), self.pixel_temperature
        )


@dataclass
class ConvVAEConfig:
    """A VAE whose encoder and decoder are the auto-encoder's convolutional parts.

    The conv encoder's feature map is flattened and mapped, through an optional hidden layer of
    ``hidden_features``, to the latent mean and log-variance (``latent_features`` each); the
    decoder mirrors that back to a feature map for the transposed convolutions.

    ``labels`` (both configs): names of the classes of a ``LabelPrior`` fitted after training,
    in order; empty for a VAE that samples from N(0, I). ``prior_components`` (Gaussians per
    label) and ``prior_temperature`` are that prior's ``components`` and ``temperature``;
    ``pixel_temperature`` is the temperature /generate renders pixels at
    (``VariationalAutoEncoder.decode``).

    ``res_blocks``: residual blocks (``Residual`` and an activation) added at each of the two
    resolutions of the encoder and of the decoder; 0 is the auto-encoder's two-convolution
    layout. ``dropout``: the probability of dropping each input of the dense layers in
    training (the flattened convolutional features of the encoder and the hidden layers).
    """

    architecture: ClassVar[str] = "conv-vae"
    kind: ClassVar[str] = "vae"
    image_size: tuple[int, int] = (28, 28)
    in_channels: int = 1
    hid_channels: int = 32
    code_channels: int = 64
    kernel_size: int = 5
    stride: int = 2
    pooling: int = 1
    hidden_features: int = 512
    latent_features: int = 32
    activation: str = "elu"
    labels: tuple[str, ...] = ()
    prior_components: int = 1
    prior_temperature: float = 1.0
    pixel_temperature: float = 1.0
    res_blocks: int = 0
    dropout: float = 0.0

    def _blocks(self, channels: int, activation_first: bool = False) -> list[nn.Module]:
        """``res_blocks`` residual blocks of ``channels``, each followed (or preceded) by the
        activation."""
        layers: list[nn.Module] = []
        for _ in range(self.res_blocks):
            pair = [Residual(channels, self.activation), make_activation(self.activation)]
            layers += pair[::-1] if activation_first else pair
        return layers

    def _dense(self, sizes: list[int]) -> list[nn.Module]:
        """Linear layers through ``sizes`` with an activation between them."""
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(pairwise(sizes)):
            layers += [make_activation(self.activation)] if i else []
            layers += [nn.Dropout(self.dropout)] if i and self.dropout else []
            layers.append(nn.Linear(n_in, n_out))
        return layers

    def build(self, assumption: str | None = None) -> VariationalAutoEncoder:
        act = make_activation(self.activation)
        parts = (self.kernel_size, self.stride, self.pooling, act)
        features = conv_encoder(self.in_channels, self.hid_channels, self.code_channels, *parts)
        if self.res_blocks:  # after the first convolution's activation, and after the last
            first, act_, pool, last = features
            features = nn.Sequential(
                first,
                act_,
                *self._blocks(self.hid_channels),
                pool,
                last,
                *self._blocks(self.code_channels, activation_first=True),
            )
        with torch.no_grad():
            code_shape = features(torch.zeros(1, self.in_channels, *self.image_size)).shape[1:]
        hidden = [self.hidden_features] if self.hidden_features else []
        sizes = [code_shape.numel(), *hidden, 2 * self.latent_features]
        encoder = nn.Sequential(
            features,
            nn.Flatten(),
            make_activation(self.activation),
            *([nn.Dropout(self.dropout)] if self.dropout else []),
            *self._dense(sizes),
        )
        sizes = [self.latent_features, *hidden, code_shape.numel()]
        convolutions = conv_decoder(self.code_channels, self.hid_channels, self.in_channels, *parts)
        if self.res_blocks:  # before the first transposed convolution, and after its activation
            first, act_, upsample, last = convolutions
            convolutions = nn.Sequential(
                *self._blocks(self.code_channels),
                first,
                act_,
                *self._blocks(self.hid_channels),
                upsample,
                last,
            )
        decoder = nn.Sequential(
            *self._dense(sizes),
            make_activation(self.activation),
            nn.Unflatten(1, tuple(code_shape)),
            convolutions,
            CropTo(*self.image_size),
        )
        return VariationalAutoEncoder(
            encoder, decoder, assumption, _prior(self), self.pixel_temperature
        )


def _prior(config: MLPVAEConfig | ConvVAEConfig) -> LabelPrior | None:
    if not config.labels:
        return None
    return LabelPrior(
        len(config.labels),
        config.latent_features,
        config.prior_components,
        config.prior_temperature,
    )
