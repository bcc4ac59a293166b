"""Why a classifier chose a class: four attribution maps of one class's logit over the input.

Every method works on an ``UndoableClassifier`` (``classifier.py``) and explains the logit of a
target class (not its probability), each as Captum computes it:

- ``gradcam`` (Selvaraju et al., 2017): a layer's activations weighted by the spatial mean of
  the logit's gradient there, summed over channels and rectified, then upsampled to the input
  bilinearly (Captum's ``LayerGradCam(relu_attributions=True)`` and
  ``LayerAttribution.interpolate(..., "bilinear")``);
- ``guided_gradcam`` (Selvaraju et al., 2017): guided backpropagation of the logit to the
  input, times Grad-CAM upsampled by nearest neighbours (Captum's ``GuidedGradCam``);
- ``integrated_gradients`` (Sundararajan et al., 2017): the input times the logit's gradient
  integrated along the straight path from a black (zero) image, by Gauss-Legendre quadrature
  (Captum's ``IntegratedGradients``, whose default method this is);
- ``occlusion`` (Zeiler & Fergus, 2014, Figure 7): how far the logit falls when a square
  window of the input is set to zero, averaged over the windows that cover each pixel
  (Captum's ``Occlusion`` with a window over every channel).

Grad-CAM and Guided Grad-CAM take one forward and one backward pass per image. Integrated
gradients and occlusion take many passes of one image, so each is a plan: ``inputs`` gives the
images of its passes, which a caller may push through the network in batches of its choosing,
shared with other images' passes, and ``reduce`` turns the passes' outputs into the map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .classifier import UndoableClassifier
from .deconvnet import RELU_RULES

ATTRIBUTION_METHODS = ("gradcam", "guided_gradcam", "integrated_gradients", "occlusion")
DEFAULT_STEPS = 50  # Captum's default n_steps
MAX_STEPS = 256
MAX_OCCLUSIONS = 1024  # window positions of one image


@dataclass(frozen=True)
class OcclusionDefaults:
    """Occlusion's window and stride for square inputs of one size, in pixels.

    Attributes
    ----------
    window, stride : int
        The defaults: a seventh of the side, moved by half its side.
    min_stride : int
        The least stride that keeps the positions within ``MAX_OCCLUSIONS`` for any window.
    """

    window: int
    stride: int
    min_stride: int

    @classmethod
    def of(cls, size: int) -> OcclusionDefaults:
        window = max(1, size // 7)
        min_stride = next(
            s for s in range(1, size + 1) if (-(-(size - 1) // s) + 1) ** 2 <= MAX_OCCLUSIONS
        )
        return cls(window, max(min_stride, window // 2, 1), min_stride)


def _cam(activations: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w) activations and their gradient -> the (N, 1, h, w) rectified Grad-CAM."""
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1): each map's importance
    return torch.relu((weights * activations).sum(dim=1, keepdim=True))


def _layer(net: UndoableClassifier, layer: int | None) -> int:
    layer = net.last_convolution() if layer is None else layer
    net.check_layer(layer)
    return layer


def gradcam(
    net: UndoableClassifier, x: torch.Tensor, target: torch.Tensor, layer: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Grad-CAM of each image's target logit at ``layer``, upsampled to the input.

    Parameters
    ----------
    net : UndoableClassifier
        The classifier, in eval mode.
    x : (N, C, H, W) torch.Tensor
        Normalised images.
    target : (N,) torch.Tensor of int64
        The class whose logit each image's map explains; ``PREDICTED`` for the predicted one.
    layer : int, optional
        1-based feature layer whose output is weighted; by default the last convolution's
        ReLU (``UndoableClassifier.last_convolution``).

    Returns
    -------
    logits : (N, num_classes) torch.Tensor
    attribution : (N, 1, H, W) torch.Tensor
        Non-negative; bilinear upsampling of the (N, 1, h, w) map at the layer.
    """
    layer = _layer(net, layer)
    rules = {layer: RELU_RULES["saliency"]}
    logits, signals, activations = net.target_backward(x, target, rules, keep=layer)
    cam = _cam(activations, signals[layer])
    return logits, F.interpolate(cam, size=x.shape[2:], mode="bilinear")


def guided_gradcam(
    net: UndoableClassifier, x: torch.Tensor, target: torch.Tensor, layer: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Guided Grad-CAM: guided backpropagation of each image's target logit to the input, times
    Grad-CAM at ``layer`` upsampled by nearest neighbours.

    Parameters
    ----------
    net, x, target, layer
        As for ``gradcam``.

    Returns
    -------
    logits : (N, num_classes) torch.Tensor
    attribution : (N, C, H, W) torch.Tensor
    """
    layer = _layer(net, layer)
    rules = {layer: RELU_RULES["saliency"], 0: RELU_RULES["guided_backprop"]}
    logits, signals, activations = net.target_backward(x, target, rules, keep=layer)
    cam = _cam(activations, signals[layer])
    return logits, signals[0] * F.interpolate(cam, size=x.shape[2:], mode="nearest")


@dataclass(frozen=True)
class IntegratedGradientsPlan:
    """
    Integrated gradients of one image from a zero baseline, by ``steps``-point Gauss-Legendre
    quadrature of the gradient along ``alpha * image`` for ``alpha`` in [0, 1].

    Attributes
    ----------
    image : (1, C, H, W) torch.Tensor
        The normalised image.
    alphas : (steps,) torch.Tensor
        Where on the path each pass is, as float32 (the image's dtype) on the image's device.
    weights : (steps,) torch.Tensor
        The quadrature weight of each pass, summing to 1.
    """

    image: torch.Tensor
    alphas: torch.Tensor
    weights: torch.Tensor

    @classmethod
    def of(cls, image: torch.Tensor, steps: int = DEFAULT_STEPS) -> IntegratedGradientsPlan:
        """The plan for a (1, C, H, W) image in ``steps`` passes (at least 1)."""
        if steps < 1:
            raise ValueError(f"expected steps >= 1 but received {steps}")
        nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]
        as_tensor = lambda v: torch.tensor(v, dtype=image.dtype, device=image.device)  # noqa: E731
        return cls(image, as_tensor(0.5 * (1 + nodes)), as_tensor(0.5 * weights))

    @property
    def steps(self) -> int:
        return len(self.alphas)

    def inputs(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """The (stop - start, C, H, W) scaled images of passes ``start`` to ``stop``; each needs
        the gradient of the target logit with respect to itself."""
        return self.image * self.alphas[start:stop].view(-1, 1, 1, 1)

    def reduce(self, gradients: torch.Tensor) -> torch.Tensor:
        """(steps, C, H, W) gradients of the passes, in order -> the (1, C, H, W) attribution."""
        weighted = gradients * self.weights.view(-1, 1, 1, 1)
        return weighted.sum(dim=0, keepdim=True) * self.image


def integrated_gradients(
    net: UndoableClassifier,
    x: torch.Tensor,
    target: torch.Tensor,
    steps: int = DEFAULT_STEPS,
    batch_size: int = 64,
) -> torch.Tensor:
    """
    Integrated gradients of each image's target logit, in passes of ``batch_size`` images.

    Parameters
    ----------
    net : UndoableClassifier
    x : (N, C, H, W) torch.Tensor
    target : (N,) torch.Tensor of int64
    steps : int
        Passes per image.
    batch_size : int
        Most passes in one forward and backward pass.

    Returns
    -------
    attribution : (N, C, H, W) torch.Tensor
    """
    maps = []
    for image, label in zip(x, target, strict=True):
        plan = IntegratedGradientsPlan.of(image[None], steps)
        gradients = []
        for start in range(0, steps, batch_size):
            passes = plan.inputs(start, start + batch_size)
            _, gradient = net.target_gradient(passes, label.expand(len(passes)))
            gradients.append(gradient)
        maps.append(plan.reduce(torch.cat(gradients)))
    return torch.cat(maps)


@dataclass(frozen=True)
class OcclusionPlan:
    """
    Occlusion of one image by a square window of zeros over every channel, at every
    ``stride``-th position from the top left, the last row and column of windows overhanging
    the image where the stride does not fit it (as Captum's ``Occlusion`` places them).

    Attributes
    ----------
    image : (1, C, H, W) torch.Tensor
        The normalised image.
    window, stride : int
        The window's side and its step, in pixels: ``1 <= window <= min(H, W)``, and
        ``stride >= 1``. Captum asks for ``stride <= window``; a longer stride leaves pixels
        that no window covers, whose attribution is zero.
    """

    image: torch.Tensor
    window: int
    stride: int

    def __post_init__(self):
        height, width = self.image.shape[2:]
        if not 1 <= self.window <= min(height, width):
            raise ValueError(
                f"expected window in [1, {min(height, width)}] but received {self.window}"
            )
        if self.stride < 1:
            raise ValueError(f"expected stride >= 1 but received {self.stride}")

    @property
    def grid(self) -> tuple[int, int]:
        """Rows and columns of window positions."""
        return tuple(-(-(size - self.window) // self.stride) + 1 for size in self.image.shape[2:])

    @property
    def steps(self) -> int:
        """Passes: one per window position (the unoccluded image is not one of them)."""
        rows, columns = self.grid
        return rows * columns

    def inputs(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """The (stop - start, C, H, W) occluded images of positions ``start`` to ``stop``, in
        row-major order; each needs only a forward pass."""
        positions = range(self.steps)[start:stop]
        occluded = self.image.expand(len(positions), -1, -1, -1).clone()
        columns = self.grid[1]
        for copy, position in zip(occluded, positions, strict=True):
            top, left = (position // columns) * self.stride, (position % columns) * self.stride
            copy[:, top : top + self.window, left : left + self.window] = 0
        return occluded

    def reduce(self, score: torch.Tensor, occluded_scores: torch.Tensor) -> torch.Tensor:
        """
        The (1, 1, H, W) attribution from the target's logit for the image, ``score`` (a
        scalar tensor), and for every occluded image, ``occluded_scores`` (steps,) in order.
        """
        drops = (score - occluded_scores).view(1, 1, *self.grid)
        ones = torch.ones_like(drops)
        kernel = torch.ones(1, 1, self.window, self.window, dtype=drops.dtype, device=drops.device)
        height, width = self.image.shape[2:]
        # each window's drop spread over its pixels: the transposed convolution of the grid
        total = F.conv_transpose2d(drops, kernel, stride=self.stride)[..., :height, :width]
        covering = F.conv_transpose2d(ones, kernel, stride=self.stride)[..., :height, :width]
        return total / covering.clamp_min(1)  # uncovered pixels (stride > window): zero


def occlusion(
    net: UndoableClassifier,
    x: torch.Tensor,
    target: torch.Tensor,
    window: int,
    stride: int,
    batch_size: int = 64,
) -> torch.Tensor:
    """
    Occlusion maps of each image's target logit, in passes of ``batch_size`` images.

    Parameters
    ----------
    net : UndoableClassifier
    x : (N, C, H, W) torch.Tensor
    target : (N,) torch.Tensor of int64
    window, stride : int
        As for ``OcclusionPlan``.
    batch_size : int
        Most occluded images in one forward pass.

    Returns
    -------
    attribution : (N, 1, H, W) torch.Tensor
        The same for every channel, since the window covers them all.
    """
    net.check_target(target)
    maps = []
    for image, label in zip(x, target, strict=True):
        plan = OcclusionPlan(image[None], window, stride)
        score = net.logits(plan.image)[0, label]
        scores = [
            net.logits(plan.inputs(start, start + batch_size))[:, label]
            for start in range(0, plan.steps, batch_size)
        ]
        maps.append(plan.reduce(score, torch.cat(scores)))
    return torch.cat(maps)
