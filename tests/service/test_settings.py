"""A bad setting stops the service at start with one line that names the variable, the value
and what is allowed, and exit status 2; an empty variable means the default."""

import os
import subprocess
import sys

import pytest
import torch

from service import settings as settings_module
from service.settings import Settings, load_settings
from tests.servers import ROOT

BAD = {
    "UNCONV_MAX_BATCH_SIZE": ("abc", "valid integer"),
    "UNCONV_MAX_DELAY_MS": ("-1", "greater than or equal to 0"),
    "UNCONV_CONCURRENT_BATCHES": ("0", "greater than or equal to 1"),
    "UNCONV_MAX_QUEUE": ("1.5", "valid integer"),
    "UNCONV_REQUEST_TIMEOUT_S": ("0", "greater than 0"),
    "UNCONV_MAX_UPLOAD_BYTES": ("10", "greater than or equal to 1024"),
    "UNCONV_MAX_IMAGE_PIXELS": ("many", "valid integer"),
    "UNCONV_MAX_FILES": ("0", "greater than or equal to 1"),
    "UNCONV_PORT": ("70000", "less than or equal to 65535"),
    "UNCONV_ALLOW_DOWNLOAD": ("maybe", "valid boolean"),
    "UNCONV_DEVICE": ("tpu", "expected auto, cpu, cuda or cuda:N"),
    "UNCONV_TORCH_THREADS": ("0", "greater than or equal to 1"),
    "UNCONV_CODEC_THREADS": ("x", "valid integer"),
    "UNCONV_WORKERS": ("0", "greater than or equal to 1"),
    "UNCONV_LOG_LEVEL": ("loud", "'critical', 'error', 'warning', 'info' or 'debug'"),
    "UNCONV_LOG_FORMAT": ("xml", "'text' or 'json'"),
    "UNCONV_MODEL_CONTROL": ("poll", "'none' or 'explicit'"),
    "UNCONV_WATCH_CHECKPOINTS": ("often", "valid boolean"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_is_one_line_naming_it_and_exit_status_2(name, monkeypatch, capsys):
    value, allowed = BAD[name]
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        load_settings()
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"unconv: configuration error: {name}={value!r} is invalid: ")
    assert allowed in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_configuration_error(device, monkeypatch, capsys):
    monkeypatch.setenv("UNCONV_DEVICE", device)
    with pytest.raises(SystemExit):
        load_settings()
    assert "CUDA is not available on this machine" in capsys.readouterr().err


def test_four_workers_share_a_gpu_unless_the_cores_are_fewer_or_others_are_asked_for(
    monkeypatch,
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # pretend there is a GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(settings_module, "available_cores", lambda: 16)
    assert Settings().worker_processes() == 4
    assert Settings(device="cpu").worker_processes() == 16
    monkeypatch.setattr(settings_module, "available_cores", lambda: 2)
    assert Settings().worker_processes() == 2
    monkeypatch.setenv("UNCONV_WORKERS", "3")
    assert load_settings().worker_processes() == 3  # they share the GPU (tests/test_gpu.py)


def test_every_setting_with_a_constraint_is_covered_here():
    free = {"UNCONV_CHECKPOINT_DIR", "UNCONV_HOST", "UNCONV_API_KEY"}  # any text is valid
    free |= {"UNCONV_NETWORKS", "UNCONV_CORS_ORIGINS"}  # lists; unknown networks: /models
    assert set(BAD) | free == {f"UNCONV_{name.upper()}" for name in Settings.model_fields}


def test_an_empty_variable_means_the_default(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.setenv(f"UNCONV_{name.upper()}", "")
    assert load_settings() == Settings()
    assert Settings().networks == ["alexnet", "vgg16"] and Settings().api_key is None


def test_none_serves_no_torchvision_network(monkeypatch):
    monkeypatch.setenv("UNCONV_NETWORKS", "none")
    assert load_settings().networks == []


@pytest.mark.parametrize(
    "command",
    [["-m", "service"], ["-m", "uvicorn", "service.api:app", "--port", "1"]],
    ids=["python -m service", "uvicorn service.api:app"],
)
def test_both_ways_of_starting_exit_2_with_one_line(command):
    env = {**os.environ, "UNCONV_DEVICE": "tpu", "UNCONV_MAX_BATCH_SIZE": ""}
    done = subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "unconv: configuration error: UNCONV_DEVICE='tpu' is invalid: "
        "expected auto, cpu, cuda or cuda:N"
    ]


def test_a_worker_runs_no_more_batches_at_once_than_its_cores_unless_asked(monkeypatch):
    monkeypatch.delenv("UNCONV_CONCURRENT_BATCHES", raising=False)
    assert [Settings().for_cores(n).concurrent_batches for n in (1, 2, 8)] == [1, 2, 2]
    monkeypatch.setenv("UNCONV_CONCURRENT_BATCHES", "3")  # set: kept whatever the cores
    assert [Settings().for_cores(n).concurrent_batches for n in (1, 8)] == [3, 3]
