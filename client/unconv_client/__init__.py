"""Python client of the unconv inference service: HTTP only, ``httpx`` its one dependency.

>>> from unconv_client import UnconvClient
>>> with UnconvClient("http://127.0.0.1:8000") as client:
...     client.generate(n=16, seed=7).save("samples.png")

``AsyncUnconvClient`` has the same methods, to be awaited. Every error answer of the service
raises ``UnconvError`` with its ``status``, stable ``code``, ``detail`` and ``retry_after``.
The client sends only the parameters a caller gives, so the service's defaults are the only
defaults. With the extras ``pillow`` and ``numpy`` PNG answers are PIL images and npy answers
arrays; without them both are bytes (``PngBytes``, ``NpyBytes``) that can still be saved.

Command line: ``unconv-client --help`` or ``python -m unconv_client --help``.
"""

from .client import AsyncUnconvClient, UnconvClient
from .errors import UnconvError
from .results import NpyBytes, PngBytes

__version__ = "0.1.0"

__all__ = [
    "AsyncUnconvClient",
    "NpyBytes",
    "PngBytes",
    "UnconvClient",
    "UnconvError",
    "__version__",
]
