"""Checkpoints: safetensors + JSON round trips and clear errors for broken files."""

import json
import os
import stat

import pytest
import torch

from service.models import (
    MNIST_NORMALISATION,
    CheckpointError,
    CNNConfig,
    ConvAEConfig,
    ConvVAEConfig,
    MLPVAEConfig,
    load_checkpoint,
    save_checkpoint,
)

CONFIGS = [
    (ConvAEConfig(hid_channels=8, code_channels=4, kernel_size=3), "gauss"),
    (MLPVAEConfig(hidden_features=16, latent_features=4), "binomial"),
    (ConvVAEConfig(hid_channels=4, code_channels=4, latent_features=4), "binary"),
    (CNNConfig(channels=(4, 8), hidden_features=16), None),
]


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    config, assumption = CONFIGS[0]
    model = config.build(assumption)
    save_checkpoint(
        tmp_path / "ae",
        model,
        config,
        MNIST_NORMALISATION,
        assumption,
        {"metrics": {"mse": 0.01}, "epochs": 3},
    )
    return tmp_path / "ae", model


@pytest.mark.parametrize("config, assumption", CONFIGS, ids=lambda c: getattr(c, "architecture", c))
def test_round_trip_gives_the_same_outputs(tmp_path, config, assumption):
    torch.manual_seed(0)
    model = config.build(assumption).eval()
    path = save_checkpoint(
        tmp_path / "model", model, config, MNIST_NORMALISATION, assumption, {"seed": 1}
    )
    assert path.name == "model.json" and (tmp_path / "model.safetensors").is_file()
    loaded = load_checkpoint(tmp_path / "model.safetensors")
    assert loaded.config == config and loaded.assumption == assumption
    assert loaded.metadata == {"seed": 1} and loaded.normalisation == MNIST_NORMALISATION
    assert not loaded.model.training
    x = torch.randn(2, 1, 28, 28)
    out, expected = loaded.model(x), model(x)
    out, expected = (out[0], expected[0]) if isinstance(out, tuple) else (out, expected)
    assert torch.equal(out, expected)


def test_checkpoints_that_record_a_torchvision_version_still_load(saved):
    # training recorded torchvision's version in every checkpoint until it stopped using it
    path, model = saved
    json_path = path.with_name("ae.json")
    document = json.loads(json_path.read_text())
    document["metadata"]["versions"] = {"python": "3.11.7", "torchvision": "0.19.0"}
    json_path.write_text(json.dumps(document))
    loaded = load_checkpoint(path)
    assert loaded.metadata["versions"]["torchvision"] == "0.19.0"
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded.model(x), model.eval()(x))


def test_missing_files_are_named(saved, tmp_path):
    with pytest.raises(CheckpointError, match=r"expected checkpoint metadata at .*nope.json"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "ae.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"expected checkpoint weights at .*ae.safetensors"):
        load_checkpoint(saved[0])


def _edit_json(path, edit):
    json_path = path.with_name(path.name + ".json")
    document = json.loads(json_path.read_text())
    edit(document)
    json_path.write_text(json.dumps(document))


def test_unknown_architecture_is_named(saved):
    _edit_json(saved[0], lambda d: d.update(architecture="resnet"))
    with pytest.raises(CheckpointError, match=r"unknown architecture 'resnet'; expected one of"):
        load_checkpoint(saved[0])


def test_config_that_does_not_match_the_weights_is_explained(saved):
    _edit_json(saved[0], lambda d: d["config"].update(hid_channels=16))
    with pytest.raises(
        CheckpointError,
        match=r"encoder.0.weight has shape \(8, 1, 3, 3\) but the "
        r"config expects \(16, 1, 3, 3\)",
    ):
        load_checkpoint(saved[0])


def test_unknown_config_field_and_bad_assumption_are_named(saved):
    _edit_json(saved[0], lambda d: d["config"].update(depth=3))
    with pytest.raises(CheckpointError, match=r"unknown field\(s\) \['depth'\]"):
        load_checkpoint(saved[0])
    _edit_json(saved[0], lambda d: (d["config"].pop("depth"), d.update(assumption="poisson")))
    with pytest.raises(CheckpointError, match=r"expected assumption in .* but found 'poisson'"):
        load_checkpoint(saved[0])


def test_corrupt_files_are_reported(saved, tmp_path):
    (tmp_path / "ae.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(saved[0])
    (tmp_path / "ae.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        load_checkpoint(saved[0])
    (tmp_path / "ae.json").write_text('{"format": "pickle"}')
    with pytest.raises(CheckpointError, match="expected format 'unconv-checkpoint/1'"):
        load_checkpoint(saved[0])


def test_bad_normalisation_is_rejected(saved):
    _edit_json(saved[0], lambda d: d.update(normalisation={"mean": [0.1], "std": [0.0]}))
    with pytest.raises(CheckpointError, match="positive std"):
        load_checkpoint(saved[0])


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_get_the_mode_of_the_umask(tmp_path, umask):
    # safetensors writes 0600 whatever the umask: a volume trained on the host as one user was
    # unreadable by the container's uid 10001
    config, assumption = CONFIGS[0]
    previous = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "ae", config.build(assumption), config, MNIST_NORMALISATION)
    finally:
        os.umask(previous)
    for name in ("ae.json", "ae.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
