"""Helpers shared by the service tests."""

from __future__ import annotations

import threading

import torch
from torch import nn

from devkit.images import png_bytes

__all__ = ["ExecutorGate", "assert_same_projection", "autograd_projection", "png_bytes", "spy"]


class ExecutorGate:
    """Blocks a service's inference threads until released, to hold requests in the queue.

    Every gate is released when its test ends (see conftest), so a failing test cannot leave
    an inference thread blocked and the app's shutdown waiting for it.
    """

    opened: list[ExecutorGate] = []

    def __init__(self, app):
        self.event = threading.Event()
        for _ in range(app.state.settings.concurrent_batches):
            app.state.engine.executor.submit(self.event.wait)
        ExecutorGate.opened.append(self)

    @classmethod
    def release_all(cls):
        while cls.opened:
            cls.opened.pop().release()

    def release(self):
        self.event.set()


class _DeconvReLU(torch.autograd.Function):
    """ReLU whose backward pass rectifies the incoming gradient (the deconvnet rule)."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp_min(0)


def autograd_projection(features: nn.Sequential, x, layer, k, channel=None):
    """Independent formulation: back-propagate the kept activations with autograd."""
    x = x.clone().requires_grad_(True)
    h = x
    for module in features[:layer]:
        h = _DeconvReLU.apply(h) if isinstance(module, nn.ReLU) else module(h)
    acts = h.detach()
    if channel is not None:
        masked = torch.full_like(acts, -torch.inf)
        masked[:, channel] = acts[:, channel]
        acts = masked
    flat = acts.flatten(1)
    _, idx = flat.topk(k, dim=1)
    kept = torch.zeros_like(flat).scatter(1, idx, h.detach().flatten(1).gather(1, idx))
    (grad,) = torch.autograd.grad(h, x, grad_outputs=kept.view_as(h))
    return grad


def assert_same_projection(actual, expected):
    scale = expected.abs().max().clamp_min(1e-12)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale.item())


def spy(app, model):
    """Record the payload count of every forward pass of ``model``."""
    batcher = app.state.engine.batchers[model]
    calls, predict = [], batcher.predict

    def recording(key, payloads):
        calls.append((key, len(payloads)))
        return predict(key, payloads)

    batcher.predict = recording
    return calls
