"""Training for a few batches: checkpoints load in service.models and reproduce their metric."""

import pytest
import torch

from service.models import MNIST_NORMALISATION, load_checkpoint
from training.data import load_mnist_5k
from training.loop import evaluate
from training.train import TrainOptions, _datasets, _loader, train


def _options(tmp_path, model, **kw):
    kw = {"epochs": 1, "max_batches": 2, "progress": False, "artefacts": False} | kw
    return TrainOptions(model=model, out=tmp_path, **kw)


@pytest.mark.parametrize("model", ["ae", "vae", "conv-vae", "mlp-vae", "cnn"])
def test_checkpoint_loads_and_reproduces_its_held_out_metric(tmp_path, model):
    result = train(_options(tmp_path, model))
    checkpoint = load_checkpoint(result.checkpoint)
    meta = checkpoint.metadata
    assert meta["data"] == "mnist-5k" and meta["epochs"] == 1 and meta["seed"] == 1806
    assert meta["test_images"] == 1000 and meta["versions"]["torch"] == torch.__version__
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


def test_vae_reports_reconstruction_and_kl_apart(tmp_path):
    history = train(_options(tmp_path, "vae", beta=0.5, kl_warmup=2)).history
    row = history[0]
    # KL weight 0.5 * 1/2 in the first warm-up epoch
    assert row["train_loss"] == pytest.approx(
        row["train_reconstruction"] + 0.25 * row["train_regularisation"], rel=1e-4
    )
    assert row["test_neg_elbo"] == pytest.approx(row["test_loss"] + row["test_kl"], rel=1e-4)


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
