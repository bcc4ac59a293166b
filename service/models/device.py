"""Where models run: one resolver for the service and for training."""

from __future__ import annotations

import re

import torch

_CUDA = re.compile(r"cuda(?::(\d+))?")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """
    The device a name asks for.

    Parameters
    ----------
    name : str
        ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    local_rank : int, optional
        The GPU that ``auto`` and ``cuda`` pick: this process's under ``torchrun``.

    Raises
    ------
    ValueError
        For any other name, or for CUDA when there is no such CUDA device; the message says
        what is allowed (the caller shows the name).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    match = _CUDA.fullmatch(name)
    if match is None:
        raise ValueError("expected auto, cpu, cuda or cuda:N")
    index = int(match.group(1)) if match.group(1) is not None else local_rank
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError("CUDA is not available on this machine; use auto or cpu")
    if index >= count:
        raise ValueError(f"this machine has CUDA devices cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def exact_convolutions() -> None:
    """Make cuDNN's convolutions deterministic and full float32, as they are on the CPU.

    The deconvnet undoes each convolution with ``conv_transpose2d``. cuDNN's fastest
    algorithms for it add partial sums with atomics in whatever order the threads finish, so
    the same upload came back as a projection a few ULPs apart from run to run (seen on an
    H200); and by default cuDNN multiplies float32 in TF32 (10-bit mantissas), which put AlexNet
    layer 5's projections up to 4% of their largest value away from the float32 ones. The
    visualiser promises the exact projection, the same for the same upload. Process-wide flags,
    set once when the service starts on CUDA.
    """
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = False
