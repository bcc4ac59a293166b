"""Default architecture and hyper-parameters of every model the project trains.

The defaults (``ae``, ``vae``, ``cnn``) are sized for a goal of five minutes together on two idle
CPU cores while meeting their held-out goals on ``mnist-5k`` (the ``vae``: 105 nats or lower);
``docs/training.json`` has the figures measured (``docs/training.md`` the report and commands,
``docs/variety.md`` how varied the VAE's samples are by every judge of
bench/studies/judges.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from service.models import CNNConfig, ConvAEConfig, ConvVAEConfig, MLPVAEConfig, ModelConfig

# the classes of every data set the project trains on (MNIST and Fashion-MNIST: 10 each), by
# index; a VAE fits one prior component per label after training (service/models/prior.py)
LABELS = tuple(str(i) for i in range(10))
# a hundred Gaussians per digit, sampled at temperature 0.5: docs/variety.md has the
# measurements (more varied samples, at the same agreement with `label`, than ten per digit)
PRIOR = {"labels": LABELS, "prior_components": 100, "prior_temperature": 0.5}
# how the served default draws and renders samples, chosen with every judge of docs/variety.md:
# its prior is the aggregate posterior itself (every training image of mnist-5k a component of
# its own; clusters of 15 on full MNIST), drawn at temperature 0.5, and each pixel the mean of
# its Bernoulli tempered to 0.75
SERVED_SAMPLING = PRIOR | {
    "prior_components": 400,
    "prior_temperature": 0.5,
    "pixel_temperature": 0.75,
}


@dataclass(frozen=True)
class Recipe:
    """How to train one model: its architecture and the defaults of every training option."""

    config: ModelConfig
    assumption: str | None
    description: str
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    optimiser: str = "adam"
    schedule: str = "onecycle"
    weight_decay: float = 0.0
    beta: float = 1.0
    augment_shift: int = 0

    @property
    def kind(self) -> str:
        return self.config.kind


RECIPES = {
    "ae": Recipe(
        ConvAEConfig(),
        "binomial",
        "convolutional auto-encoder (exercises 3-4)",
        epochs=3,
    ),
    # the training time the budget allows goes to the residual blocks, 22 epochs and a KL weight
    # under 1, which make the decoder sharper: docs/variety.md has every judge's figures
    "vae": Recipe(
        ConvVAEConfig(res_blocks=2, **SERVED_SAMPLING),
        "binomial",
        "the default VAE: conv encoder/decoder around a 512-unit dense layer, 32 latents, two "
        "residual blocks at each resolution, trained 22 epochs (AdamW, weight decay 0.1, KL at "
        "weight 0.7)",
        epochs=22,
        lr=1e-3,
        optimiser="adamw",
        weight_decay=0.1,
        beta=0.7,
    ),
    # the former default's training, 30 epochs at KL weight 0.6: over the five-minute budget, and
    # judged as the default is served (docs/judges-quality.json) little different from it
    "vae-quality": Recipe(
        ConvVAEConfig(res_blocks=2, **SERVED_SAMPLING),
        "binomial",
        "the default VAE trained 30 epochs at KL weight 0.6 (AdamW, weight decay 0.1)",
        epochs=30,
        lr=1e-3,
        optimiser="adamw",
        weight_decay=0.1,
        beta=0.6,
    ),
    "conv-vae": Recipe(
        ConvVAEConfig(
            hid_channels=64,
            code_channels=16,
            kernel_size=5,
            stride=1,
            pooling=2,
            hidden_features=0,
            **PRIOR,
        ),
        "binomial",
        "plain convolutional VAE with the auto-encoder's layout and sizes",
    ),
    "mlp-vae": Recipe(
        MLPVAEConfig(**PRIOR),
        "binomial",
        "the assignment's fully connected VAE, 784-400-20 (exercise 6)",
        batch_size=128,
        lr=1e-3,
        schedule="constant",
    ),
    "cnn": Recipe(
        CNNConfig(),
        None,
        "small MNIST classifier whose features /visualise can undo offline",
        epochs=10,
        batch_size=64,
        augment_shift=2,
    ),
}
DEFAULT_MODELS = ("ae", "vae", "cnn")
