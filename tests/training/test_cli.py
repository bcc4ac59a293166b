"""The command line: help, clear errors and non-zero exits, the defaults command."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from training.__main__ import _options, build_parser, main
from training.recipes import RECIPES, Recipe
from training.train import TrainOptions


def test_help_documents_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["vae", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--epochs",
        "--batch-size",
        "--lr",
        "--assumption",
        "--beta",
        "--kl-warmup",
        "--device",
        "--seed",
        "--resume",
        "--data",
        "--data-root",
        "--out",
    ):
        assert option in out
    batch_size = RECIPES["vae"].batch_size
    assert f"(default: {batch_size})" in out and "(default: binomial)" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ae", "--epochs", "0"], "expected an integer >= 1"),
        (["ae", "--assumption", "poisson"], "invalid choice: 'poisson'"),
        (["cnn", "--beta", "2"], "unrecognized arguments: --beta"),
        (["gan"], "invalid choice: 'gan'"),
    ],
)
def test_malformed_options_exit_2_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_root_is_a_clear_error(tmp_path, capsys):
    code = main(
        [
            "ae",
            "--data",
            "mnist",
            "--data-root",
            str(tmp_path),
            "--no-download",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: mnist not found under") and "Traceback" not in err


def test_resuming_a_broken_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["ae", "--resume", "--out", str(tmp_path), "--no-progress"]) == 1
    assert "expected checkpoint metadata at" in capsys.readouterr().err
    assert (
        main(
            ["cnn", "--out", str(tmp_path), "--epochs", "1", "--max-batches", "1", "--no-progress"]
        )
        == 0
    )
    (tmp_path / "cnn.state.safetensors").write_bytes(b"garbage")
    code = main(["cnn", "--resume", "--epochs", "2", "--out", str(tmp_path), "--no-progress"])
    assert (
        code == 1 and "cannot resume: training state cnn.state is broken" in capsys.readouterr().err
    )


def test_defaults_skips_checkpoints_that_exist(tmp_path, capsys):
    for name in ("ae", "vae", "cnn"):
        (tmp_path / f"{name}.json").write_text(json.dumps({}))
        (tmp_path / f"{name}.safetensors").write_bytes(b"")
    assert main(["defaults", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("exists, skipped") == 3


def test_help_ignores_the_services_other_settings():
    # a bad service variable must not turn the trainer's --help into a validation traceback
    env = os.environ | {"UNCONV_PORT": "notaport", "UNCONV_CHECKPOINT_DIR": "elsewhere"}
    done = subprocess.run(
        [sys.executable, "-m", "training", "ae", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "(default: elsewhere)" in done.stdout and "Traceback" not in done.stderr


@pytest.mark.parametrize("model", list(RECIPES))
def test_the_command_lines_defaults_are_train_options_and_the_recipes(model, tmp_path):
    args = build_parser().parse_args([model, "--out", str(tmp_path)])
    given = _options(args, model)
    assert given.recipe() == RECIPES[model]
    plain = TrainOptions(model=model, out=tmp_path)
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    for field in dataclasses.fields(TrainOptions):
        if field.name not in recipe_fields | {"name"}:
            assert getattr(given, field.name) == getattr(plain, field.name), field.name


@pytest.mark.slow
def test_a_training_runs_printed_lines_fit_100_columns(tmp_path, capsys):
    # the VAE has the most metrics; two epochs print the header, a row, then the summary
    argv = ["vae", "--out", str(tmp_path), "--epochs", "2", "--max-batches", "1"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).replace("\r", "\n").splitlines()
    assert any("-elbo" in line for line in lines)  # the table was printed
    too_wide = [line for line in lines if len(line) > 100]
    assert not too_wide
