"""Training for a few batches: checkpoints load in service.models and reproduce their metric."""

import pytest
import torch
from torch import nn

from service.models import (
    MNIST_NORMALISATION,
    ConvVAEConfig,
    Normalisation,
    VariationalAutoEncoder,
    load_checkpoint,
)
from training.data import load_mnist_5k
from training.loop import evaluate
from training.train import TrainOptions, _datasets, _loader, train


def _options(tmp_path, model, **kw):
    kw = {"epochs": 1, "max_batches": 2, "progress": False, "artefacts": False} | kw
    return TrainOptions(model=model, out=tmp_path, **kw)


@pytest.mark.parametrize("model", ["ae", "vae", "conv-vae", "mlp-vae", "cnn"])
def test_every_model_trains_into_a_checkpoint_of_the_weights_it_evaluated(tmp_path, model):
    result = train(_options(tmp_path, model))
    checkpoint = load_checkpoint(result.checkpoint)
    meta = checkpoint.metadata
    assert meta["data"] == "mnist-5k" and meta["epochs"] == 1 and meta["seed"] == 1806
    assert meta["test_images"] == 1000 and meta["versions"]["torch"] == torch.__version__
    assert set(meta["versions"]) == {"python", "torch"}  # the models use no torchvision
    # the saved weights are the ones that were evaluated: evaluating them again gives the
    # metrics in the file (evaluate's own correctness: the hand-computed test below)
    recipe = _options(tmp_path, model).recipe()
    _, test_set = _datasets(recipe, load_mnist_5k())
    metrics = evaluate(
        checkpoint.model,
        checkpoint.kind,
        _loader(test_set, 500),
        torch.device("cpu"),
        checkpoint.assumption,
        MNIST_NORMALISATION,
        seed=1806,
    )
    assert metrics == pytest.approx(meta["metrics"], rel=1e-5)
    expected = {"classifier": "accuracy", "autoencoder": "mse", "vae": "neg_elbo"}
    assert expected[checkpoint.kind] in metrics


def _tiny_vae() -> VariationalAutoEncoder:
    """Two-pixel images, one latent: mean = first pixel, log-variance -60 (so the one sample
    drawn is the mean to 1e-13), logits = (2z, -z)."""
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    decoder = nn.Sequential(nn.Linear(1, 2), nn.Unflatten(1, (1, 1, 2)))
    with torch.no_grad():
        encoder[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        encoder[1].bias.copy_(torch.tensor([0.0, -60.0]))
        decoder[0].weight.copy_(torch.tensor([[2.0], [-1.0]]))
        decoder[0].bias.zero_()
    return VariationalAutoEncoder(encoder, decoder, "binomial")


def test_evaluate_gives_the_hand_computed_elbo_of_a_tiny_vae():
    pixels = torch.tensor([[[[1.0, 0.0]]], [[[0.5, 1.0]]]])  # (2, 1, 1, 2)
    identity = Normalisation(mean=(0.0,), std=(1.0,))
    metrics = evaluate(
        _tiny_vae(), "vae", [(pixels, pixels)], torch.device("cpu"), "binomial", identity
    )
    # BCE with logits l against target t is softplus(l) - t l, summed over the two pixels:
    # image 1: z = 1, logits (2, -1):    softplus(2) - 2 + softplus(-1)        = 0.440190
    # image 2: z = 0.5, logits (1, -0.5): softplus(1) - 0.5 + softplus(-0.5) + 0.5 = 1.787339
    # KL = (mean^2 + e^log_var - 1 - log_var) / 2 = (mean^2 + 59) / 2: 30 and 29.625
    assert metrics["loss"] == pytest.approx((0.440190 + 1.787339) / 2, abs=1e-5)
    assert metrics["kl"] == pytest.approx((30 + 29.625) / 2, abs=1e-5)
    assert metrics["neg_elbo"] == pytest.approx(30.926264, abs=1e-5)


def test_kl_warm_up_weights_the_kl_in_the_training_loss(tmp_path):
    # lr 0: the model never changes, so both runs see the same batch, latents and KL per epoch
    # and the loss the optimiser is given differs only by the KL weight
    runs = {
        warmup: train(
            _options(
                tmp_path / str(warmup), "vae", epochs=2, max_batches=1, lr=0.0,
                schedule="constant", beta=40.0, kl_warmup=warmup,
            )
        ).history
        for warmup in (0, 4)
    }  # fmt: skip
    for epoch, (full, warming) in enumerate(zip(runs[0], runs[4], strict=True), start=1):
        kl = full["train_regularisation"]
        assert kl > 0.01 and warming["train_regularisation"] == pytest.approx(kl, rel=1e-6)
        # KL weights 40 against 40 * epoch / 4
        expected = 40 * (1 - epoch / 4) * kl
        assert full["train_loss"] - warming["train_loss"] == pytest.approx(expected, rel=1e-3)


def test_same_seed_gives_the_same_checkpoint(tmp_path):
    a = train(_options(tmp_path / "a", "vae"))
    b = train(_options(tmp_path / "b", "vae"))
    c = train(_options(tmp_path / "c", "vae", seed=7))
    weights = [(p.checkpoint.with_suffix(".safetensors")).read_bytes() for p in (a, b, c)]
    assert weights[0] == weights[1] != weights[2]


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    straight = train(_options(tmp_path / "straight", "cnn", epochs=2, schedule="constant"))
    train(_options(tmp_path / "resumed", "cnn", epochs=1, schedule="constant"))
    resumed = train(
        _options(tmp_path / "resumed", "cnn", epochs=2, schedule="constant", resume=True)
    )
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    a, b = load_checkpoint(straight.checkpoint).model, load_checkpoint(resumed.checkpoint).model
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_artefacts_are_written_beside_the_checkpoint(tmp_path):
    options = _options(tmp_path, "vae")
    options.artefacts = True
    train(options)
    for suffix in ("losses", "reconstructions", "samples"):
        png = tmp_path / f"vae.{suffix}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_before_its_fit_a_priors_density_is_the_standard_normals():
    # an unfitted prior: every component N(0, I); the evaluation takes N(0, I)'s density for
    # it (prior_fitted=False) without a pass over the components, and gets the same figures
    torch.manual_seed(0)
    vae = ConvVAEConfig(
        hid_channels=4,
        code_channels=4,
        hidden_features=8,
        latent_features=3,
        labels=("a", "b"),
        prior_components=20,
    ).build("binomial")
    pixels = torch.rand(6, 1, 28, 28)
    batches = [(MNIST_NORMALISATION.normalise(pixels), pixels)]
    args = (vae, "vae", batches, torch.device("cpu"), "binomial", MNIST_NORMALISATION)
    shortcut, full = evaluate(*args, prior_fitted=False), evaluate(*args, prior_fitted=True)
    assert shortcut == pytest.approx(full, rel=1e-5)
    # and what both estimate: log q(z|x) - log N(z; 0, I) at the same latent sample
    mean, log_var = vae.encode(batches[0][0])
    z = VariationalAutoEncoder.sample(mean, log_var, torch.Generator().manual_seed(0))
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp()).log_prob(z).sum(1)
    p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert shortcut["kl_fitted"] == pytest.approx((q - p).mean().item(), rel=1e-4)
