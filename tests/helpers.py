"""Helpers shared by the service tests."""

from __future__ import annotations

import io
import threading

import torch
from PIL import Image


def png_bytes(size=(28, 28), mode="L", seed=0, fmt="PNG") -> bytes:
    """A random image encoded as ``fmt``."""
    generator = torch.Generator().manual_seed(seed)
    channels = len(mode) if mode in ("RGB", "RGBA") else 1
    pixels = torch.randint(
        0, 256, (size[1], size[0], channels), generator=generator, dtype=torch.uint8
    ).numpy()
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


class ExecutorGate:
    """Blocks a service's inference threads until released, to hold requests in the queue.

    Every gate is released when its test ends (see conftest), so a failing test cannot leave
    an inference thread blocked and the app's shutdown waiting for it.
    """

    opened: list[ExecutorGate] = []

    def __init__(self, app):
        self.event = threading.Event()
        for _ in range(app.state.settings.concurrent_batches):
            app.state.service.executor.submit(self.event.wait)
        ExecutorGate.opened.append(self)

    @classmethod
    def release_all(cls):
        while cls.opened:
            cls.opened.pop().release()

    def release(self):
        self.event.set()
