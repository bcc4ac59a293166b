"""A whole classifier, feature stack and head, whose every layer can be undone.

The attribution methods (``attribution.py``) need the gradient of one class's logit with respect
to a layer's output or to the input, and guided backpropagation's variant of it. Both are the
deconvnet's undo (``deconvnet.py``) run from the logits instead of from a layer's top
activations: the head's layers (pooling to a fixed size, flattening, dropout, linear layers and
ReLUs) get ``undo`` methods of their own, each the transpose of its layer, so that with the
``saliency`` ReLU rule the undo is exactly the gradient and with ``guided_backprop`` it is
guided backpropagation through every ReLU of the network, the head's too (as Captum's hooks do).
The undo runs under ``torch.inference_mode()``, where autograd cannot.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .deconvnet import RELU_RULES, ReluRule, UndoableConv2d, UndoableReLU, UndoableSequential

PREDICTED = -1  # as a target: the class the network predicts for the input


class UndoableLinear(nn.Module):
    """Wrapper around a linear layer, undone by its transposed weight (no bias)."""

    def __init__(self, module: nn.Linear):
        super().__init__()
        self.original = module

    def forward(self, x: torch.Tensor):
        return F.linear(x, self.original.weight, self.original.bias), None

    @torch.no_grad()
    def undo(self, s: torch.Tensor, context) -> torch.Tensor:
        """(N, out_features) -> (N, in_features)."""
        return s @ self.original.weight


class UndoableFlatten(nn.Module):
    """Wrapper around a flatten layer, undone by reshaping to the input's shape."""

    def __init__(self, module: nn.Flatten):
        super().__init__()
        self.original = module

    def forward(self, x: torch.Tensor):
        return self.original(x), x.shape

    @torch.no_grad()
    def undo(self, s: torch.Tensor, context) -> torch.Tensor:
        return s.reshape(context)


class UndoableDropout(nn.Module):
    """Wrapper around a dropout layer of a network in eval mode, where it is the identity."""

    def __init__(self, module: nn.Dropout):
        super().__init__()
        self.original = module

    def forward(self, x: torch.Tensor):
        if self.training:
            raise RuntimeError("dropout is undone only in eval mode, where it is the identity")
        return x, None

    def undo(self, s: torch.Tensor, context) -> torch.Tensor:
        return s


class UndoableAdaptiveAvgPool2d(nn.Module):
    """Wrapper around adaptive average pooling, undone by its transpose (its backward pass):
    every value spread evenly over the input window it averaged."""

    def __init__(self, module: nn.AdaptiveAvgPool2d):
        super().__init__()
        self.original = module

    def forward(self, x: torch.Tensor):
        return F.adaptive_avg_pool2d(x, self.original.output_size), x.shape

    @torch.no_grad()
    def undo(self, s: torch.Tensor, context) -> torch.Tensor:
        """(N, C, h, w) -> (N, C, H, W) for the input's shape ``context``."""
        # the backward kernel reads only its second argument's shape
        return torch.ops.aten._adaptive_avg_pool2d_backward(s.contiguous(), s.new_empty(context))


class UndoableClassifier(UndoableSequential):
    """
    A classifier as one undoable stack: its feature layers, then its head.

    Parameters
    ----------
    features : nn.Sequential
        The feature stack (Conv2d, ReLU, MaxPool2d, AvgPool2d), layers ``1`` to
        ``len(features)``, counted as ``/visualise`` counts them.
    head : nn.Sequential
        From the features' (N, C, h, w) output to the (N, num_classes) logits: any of
        AdaptiveAvgPool2d, Flatten, Dropout (eval mode), Linear and ReLU besides the feature
        layers' types.

    The wrapped modules are the network's own, so that this shares its parameters (and device).
    """

    UNDOABLE_MODULES = UndoableSequential.UNDOABLE_MODULES | {
        nn.Linear: UndoableLinear,
        nn.Flatten: UndoableFlatten,
        nn.Dropout: UndoableDropout,
        nn.AdaptiveAvgPool2d: UndoableAdaptiveAvgPool2d,
    }

    def __init__(self, features: nn.Sequential, head: nn.Sequential):
        super().__init__(nn.Sequential(*features, *head))
        self.feature_layers = len(features)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) inputs -> (N, num_classes) logits, by the network's own forward pass."""
        return self.original(x)

    def last_convolution(self) -> int:
        """Grad-CAM's usual layer: the 1-based feature layer of the last convolution's
        rectified maps (its ReLU, when one follows it), as Grad-CAM's authors read them."""
        features = list(self.wrapped)[: self.feature_layers]
        convolutions = [i + 1 for i, m in enumerate(features) if isinstance(m, UndoableConv2d)]
        if not convolutions:
            raise ValueError("the feature stack holds no convolution")
        last = convolutions[-1]
        rectified = last < len(features) and isinstance(features[last], UndoableReLU)
        return last + 1 if rectified else last

    def check_layer(self, layer: int) -> None:
        """Raise ``ValueError`` unless ``layer`` is a 1-based feature layer."""
        if not 1 <= layer <= self.feature_layers:
            raise ValueError(f"expected layer in [1, {self.feature_layers}] but received {layer}")

    @property
    def num_classes(self) -> int:
        """The number of logits: the last linear layer's output features."""
        linear = [m.original for m in self.wrapped if isinstance(m, UndoableLinear)]
        if not linear:
            raise ValueError("the head holds no linear layer")
        return linear[-1].out_features

    def check_target(self, target: torch.Tensor, predicted: bool = False) -> None:
        """Raise ``ValueError`` unless every target is a class index (or ``PREDICTED`` when
        ``predicted``)."""
        low = PREDICTED if predicted else 0
        bad = target[((target < 0) & (target != low)) | (target >= self.num_classes)]
        if len(bad):
            raise ValueError(
                f"expected target in [0, {self.num_classes - 1}] but received {bad[0].item()}"
            )

    def target_backward(
        self,
        x: torch.Tensor,
        target: torch.Tensor,
        rules: dict[int, ReluRule],
        keep: int | None = None,
    ):
        """
        One forward pass, then the undo of each sample's target logit for each rule.

        Parameters
        ----------
        x : (N, C, H, W) torch.Tensor
            The inputs.
        target : (N,) torch.Tensor of int64
            The class whose logit each sample's undo starts from; ``PREDICTED`` for the one
            with the largest logit.
        rules : dict of int to ReluRule
            For each layer to stop at (0: the input), the rule of the undo down to it;
            ``RELU_RULES["saliency"]`` gives the logit's gradient there.
        keep : int, optional
            Also return the output of this feature layer (1-based).

        Returns
        -------
        logits : (N, num_classes) torch.Tensor
        signals : dict of int to torch.Tensor
            For each key of ``rules``, the signal at that layer's output (the input's shape
            for 0).
        kept : torch.Tensor or None
            The output of layer ``keep``, e.g. (N, C, h, w).
        """
        self.check_target(target, predicted=True)
        keep_masks = any(rule.mask for rule in rules.values())
        split = keep if keep is not None else 0
        kept, early = self.forward(x, until=split, keep_masks=keep_masks)
        logits, late = self.forward(kept, keep_masks=keep_masks, start=split)
        target = torch.where(target == PREDICTED, logits.argmax(dim=1), target)
        seed = F.one_hot(target, logits.shape[1]).to(logits.dtype)  # d(logit[target])/d(logits)
        context = early + late
        signals = {down: self.undo(seed, context, rule, down) for down, rule in rules.items()}
        return logits, signals, (kept if keep is not None else None)

    def target_gradient(self, x: torch.Tensor, target: torch.Tensor):
        """
        The gradient of each sample's target logit with respect to its input.

        Parameters
        ----------
        x : (N, C, H, W) torch.Tensor
        target : (N,) torch.Tensor of int64

        Returns
        -------
        logits : (N, num_classes) torch.Tensor
        gradient : (N, C, H, W) torch.Tensor
        """
        logits, signals, _ = self.target_backward(x, target, {0: RELU_RULES["saliency"]})
        return logits, signals[0]
