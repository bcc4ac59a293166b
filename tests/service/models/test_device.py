"""The device resolver that the service and training share."""

import pytest
import torch

from service.models import resolve_device


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has ``n`` CUDA devices."""

    def have(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return have


def test_auto_is_the_cpu_without_cuda_and_this_ranks_gpu_with_it(gpus):
    gpus(0)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu", local_rank=1) == torch.device("cpu")
    gpus(2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize(
    "gpu_count, name, message",
    [
        (0, "cuda", "CUDA is not available on this machine; use auto or cpu"),
        (0, "cuda:1", "CUDA is not available on this machine; use auto or cpu"),
        (2, "cuda:2", "this machine has CUDA devices cuda:0 to cuda:1"),
        (1, "tpu", "expected auto, cpu, cuda or cuda:N"),
        (1, "cuda:x", "expected auto, cpu, cuda or cuda:N"),
    ],
)
def test_a_device_that_is_not_there_is_refused(gpus, gpu_count, name, message):
    gpus(gpu_count)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        resolve_device(name)
