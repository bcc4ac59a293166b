"""Zeiler & Fergus deconvnet: project a layer's strongest activations back to pixel space.

Every supported layer gets an ``Undoable*`` wrapper whose ``forward`` returns the layer's output
together with the context needed to undo it, and whose ``undo`` maps a signal at the layer's
output back to its input. Convolutions and pooling are undone by their exact transposes, ReLUs by
a rule (``RELU_RULES``). A projection is therefore identical to back-propagating the kept
activations through the forward pass with every ReLU's backward pass replaced by that rule:

- ``deconvnet`` (Zeiler & Fergus, 2014): a ReLU of the signal coming back, ``relu(g)``;
- ``saliency`` (Simonyan et al., 2014): the true gradient, ``g * (x > 0)`` for the ReLU's
  forward input ``x``; the signed gradient, not its magnitude (docs/methods.md);
- ``guided_backprop`` (Springenberg et al., 2015): both, ``relu(g) * (x > 0)``.

The three share the switches of max-pooling and the transposed convolutions. Conv biases play no
part in any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.utils import _pair


@dataclass(frozen=True)
class ReluRule:
    """How a ReLU's backward pass treats the signal ``g`` coming down from above.

    Attributes
    ----------
    rectify : bool
        Pass ``relu(g)``: only positive signal goes down.
    mask : bool
        Pass ``g`` only where the ReLU's forward input was positive (the true gradient's mask).
    """

    rectify: bool
    mask: bool


RELU_RULES: dict[str, ReluRule] = {
    "deconvnet": ReluRule(rectify=True, mask=False),
    "guided_backprop": ReluRule(rectify=True, mask=True),
    "saliency": ReluRule(rectify=False, mask=True),
}
METHODS = tuple(RELU_RULES)
DEFAULT_METHOD = "deconvnet"


def relu_rule(method: str) -> ReluRule:
    """The ReLU rule of ``method``, one of ``METHODS``."""
    rule = RELU_RULES.get(method)
    if rule is None:
        raise ValueError(f"expected method in {METHODS} but received {method!r}")
    return rule


class UndoableReLU(nn.Module):
    """Wrapper around a ReLU (also ``inplace=True``) that adds 'undo' functionality."""

    def __init__(self, module: nn.ReLU):
        super().__init__()
        self.original = module

    def forward(self, s: torch.Tensor, keep_mask: bool = False):
        """The ReLU of ``s``, and as context where ``s`` was positive (a bool tensor) when
        ``keep_mask``, else None: the deconvnet never needs it, and it costs a byte a value."""
        # never in place: the caller may still need the pre-activation
        return torch.relu(s), (s > 0 if keep_mask else None)

    @torch.no_grad()
    def undo(self, a: torch.Tensor, context, rule: ReluRule = RELU_RULES["deconvnet"]):
        """Undo the ReLU by ``rule``: rectify the signal ``a`` coming down from above, mask it
        by the forward input's sign (``context``, from ``forward(..., keep_mask=True)``), or
        both."""
        if rule.rectify:
            a = torch.relu(a)
        if rule.mask:
            if context is None:
                raise ValueError("this rule needs the forward pass's mask: keep_mask=True")
            a = a * context
        return a


class UndoableMaxPool2d(nn.Module):
    """Wrapper around a max-pooling layer that adds 'undo' functionality.

    Parameters
    ----------
    module : nn.MaxPool2d
        Any kernel, stride, padding, dilation and ceil mode.

    Pooling is undone with its transpose: every value goes back to the position that won its
    window (its switch), and values of overlapping windows that share a switch are added
    (``F.max_unpool2d`` would let one of them win, which one depending on the device and thread
    count). This is deterministic on every device and thread count.
    """

    def __init__(self, module: nn.MaxPool2d):
        super().__init__()
        if module.return_indices:
            raise TypeError(f"{module!r} returns indices; wrap a plain MaxPool2d")
        self.original = module

    @property
    def kwargs(self) -> dict:
        return {
            k: getattr(self.original, k)
            for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
        }

    def forward(self, x: torch.Tensor):
        out, indices = F.max_pool2d(x, return_indices=True, **self.kwargs)
        return out, (indices, x.shape[-2:])

    @torch.no_grad()
    def undo(self, y: torch.Tensor, context) -> torch.Tensor:
        """Put every value of ``y`` (N, C, h, w) back at its switch in the input (N, C, H, W).

        Parameters
        ----------
        y : torch.Tensor
            Data with the same shape as the output of the original module.
        context
            ``(indices, input_size)`` as returned by ``forward``.
        """
        indices, size = context
        kw = self.kwargs
        # max-pooling's own backward kernel is exactly the transpose (it adds values that share
        # a switch) and gathers rather than scatters on CUDA, so it is deterministic there too
        return torch.ops.aten.max_pool2d_with_indices_backward(
            y.contiguous(),
            y.new_empty((*y.shape[:-2], *size)),
            _pair(kw["kernel_size"]),
            _pair(kw["stride"]),
            _pair(kw["padding"]),
            _pair(kw["dilation"]),
            kw["ceil_mode"],
            indices,
        )


class UndoableAvgPool2d(nn.Module):
    """Wrapper around an average-pooling layer, undone by upsampling.

    The undo is the transpose of average pooling: every value is spread evenly over its window
    (for non-overlapping windows, nearest-neighbour upsampling scaled by the window's weight).
    """

    def __init__(self, module: nn.AvgPool2d):
        super().__init__()
        self.original = module

    @property
    def kwargs(self) -> dict:
        names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
        return {k: getattr(self.original, k) for k in names} | {
            "divisor_override": self.original.divisor_override
        }

    def forward(self, x: torch.Tensor):
        return F.avg_pool2d(x, **self.kwargs), x.shape[-2:]

    @torch.no_grad()
    def undo(self, y: torch.Tensor, context) -> torch.Tensor:
        """Spread ``y`` (N, C, h, w) back over the pooling windows of the input (N, C, H, W)."""
        kw = self.kwargs
        return torch.ops.aten.avg_pool2d_backward(
            y.contiguous(),
            y.new_empty((*y.shape[:-2], *context)),
            _pair(kw["kernel_size"]),
            _pair(kw["stride"] or kw["kernel_size"]),
            _pair(kw["padding"]),
            kw["ceil_mode"],
            kw["count_include_pad"],
            kw["divisor_override"],
        )


class UndoableConv2d(nn.Module):
    """Wrapper around a convolutional layer that adds 'undo' functionality.

    The undo is the transposed convolution with the same weights and no bias. Zero padding only
    (``padding_mode="zeros"``), since other modes have another transpose.
    """

    def __init__(self, module: nn.Conv2d):
        super().__init__()
        if module.padding_mode != "zeros":
            raise TypeError(
                f"{module!r} cannot be undone: expected padding_mode='zeros' "
                f"but received {module.padding_mode!r}"
            )
        if isinstance(module.padding, str):
            raise TypeError(
                f"{module!r} cannot be undone: expected numeric padding "
                f"but received {module.padding!r}"
            )
        self.original = module

    @property
    def kwargs(self) -> dict:
        return {k: getattr(self.original, k) for k in ("padding", "stride", "dilation", "groups")}

    def forward(self, x: torch.Tensor):
        return F.conv2d(x, self.original.weight, self.original.bias, **self.kwargs), x.shape[-2:]

    @torch.no_grad()
    def undo(self, s: torch.Tensor, context) -> torch.Tensor:
        """Map ``s`` (N, C_out, h, w) back to the input space (N, C_in, H, W).

        Parameters
        ----------
        s : torch.Tensor
            Data with the same shape as the output of the original module.
        context
            The input's spatial size ``(H, W)``, as returned by ``forward``.
        """
        conv = self.original
        # a strided conv maps several input sizes to one output size; output_padding picks ours
        dims = (context, s.shape[-2:], conv.stride, conv.padding, conv.dilation, conv.kernel_size)
        sizes = zip(*dims, strict=True)
        output_padding = [
            size - ((n - 1) * st - 2 * p + d * (k - 1) + 1) for size, n, st, p, d, k in sizes
        ]
        return F.conv_transpose2d(
            s,
            conv.weight,
            None,
            conv.stride,
            conv.padding,
            output_padding,
            conv.groups,
            conv.dilation,
        )


@dataclass(frozen=True)
class Visualisation:
    """A deconvnet projection and the activations it was made of.

    Attributes
    ----------
    projection : (N, C, H, W) Tensor
        The kept activations projected back to the input space.
    channel, y, x : (N, k) Tensor of int64
        Position of every kept activation in the layer's (C, h, w) output, strongest first.
    value : (N, k) Tensor
        The kept activations' values.
    activation_shape : tuple of int
        The layer's output shape (C, h, w) for one sample.
    """

    projection: torch.Tensor
    channel: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor
    value: torch.Tensor
    activation_shape: tuple[int, int, int]


DEFAULT_K = 9  # the paper's figures show the top 9 activations


def candidate_count(activation_shape: tuple[int, int, int], channel: int | None) -> int:
    """How many activations of a (C, h, w) layer the top-k is chosen from: all of them, or
    the h * w of one feature map when ``channel`` is given."""
    c, h, w = activation_shape
    return h * w if channel is not None else c * h * w


def keep_top_k(tensor: torch.Tensor, k: int = DEFAULT_K) -> torch.Tensor:
    """
    Drop all but the K highest entries in a tensor.

    Parameters
    ----------
    tensor : (N, ...) torch.Tensor
        The tensor to start from; every sample keeps its own K entries.
    k : int
        The number of entries to keep.

    Returns
    -------
    result : (N, ...) torch.Tensor
        A tensor with only the K highest entries of `tensor`
        in the corresponding positions.
        All other entries are zero.
    """
    vals, indices = torch.flatten(tensor, start_dim=1).topk(k, dim=-1)
    return _scatter_kept(tensor, indices, vals)


def _scatter_kept(like: torch.Tensor, indices: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
    # contiguous on purpose: for a channels-last `like`, flatten() would scatter into a copy
    result = torch.zeros_like(like, memory_format=torch.contiguous_format)
    result.view(len(result), -1).scatter_(-1, indices, vals)
    return result


def _top_k(activations: torch.Tensor, k: int, channel: int | None):
    """Values and flat (C*h*w) indices of the top-k entries per sample, strongest first; for
    k = 1 the first position of the maximum (``topk`` leaves ties in any order)."""
    _n, c, h, w = activations.shape
    if channel is not None and not 0 <= channel < c:
        raise ValueError(f"expected channel in [0, {c - 1}] but received {channel}")
    flat = activations.flatten(1) if channel is None else activations[:, channel].flatten(1)
    if k == 1:
        vals, indices = flat.max(dim=-1, keepdim=True)
    else:
        vals, indices = flat.topk(k, dim=-1)
    return vals, indices if channel is None else indices + channel * h * w


class UndoableSequential(nn.Module):
    """
    Wrapper around a sequential network that adds 'undo' functionality.

    Parameters
    ----------
    module : nn.Sequential
        A stack of Conv2d, ReLU, MaxPool2d and AvgPool2d layers, e.g. the ``features`` of
        torchvision's AlexNet or VGG.
    """

    UNDOABLE_MODULES = {
        nn.Conv2d: UndoableConv2d,
        nn.MaxPool2d: UndoableMaxPool2d,
        nn.AvgPool2d: UndoableAvgPool2d,
        nn.ReLU: UndoableReLU,
    }

    def __init__(self, module: nn.Sequential):
        super().__init__()
        self.original = module
        self.wrapped = nn.ModuleList([self._wrap(i, m) for i, m in enumerate(module)])

    def _wrap(self, index: int, module: nn.Module) -> nn.Module:
        undoable = self.UNDOABLE_MODULES.get(type(module))
        if undoable is None:
            supported = ", ".join(t.__name__ for t in self.UNDOABLE_MODULES)
            raise TypeError(
                f"layer {index + 1} ({module!r}) cannot be undone; expected one of {supported}"
            )
        return undoable(module)

    def __len__(self) -> int:
        return len(self.wrapped)

    def forward(
        self, x: torch.Tensor, until: int | None = None, keep_masks: bool = False, start: int = 0
    ):
        """The output of layers ``start + 1`` to ``until`` (all of them by default) applied to
        ``x``, the output of layer ``start``; and every one of those layers' context for its
        undo (with each ReLU's input mask when ``keep_masks``)."""
        context = []
        # a list's slice: slicing the ModuleList would build a new module each time
        for module in list(self.wrapped)[start:until]:
            x, ctx = module(x, keep_masks) if isinstance(module, UndoableReLU) else module(x)
            context.append(ctx)
        return x, context

    @torch.no_grad()
    def undo(
        self,
        signal: torch.Tensor,
        context: list,
        rule: ReluRule = RELU_RULES["deconvnet"],
        down_to: int = 0,
    ) -> torch.Tensor:
        """
        Map a signal at the output of layer ``len(context)`` back to the output of layer
        ``down_to`` (to the input when 0), undoing every layer on the way.

        Parameters
        ----------
        signal : torch.Tensor
            Shaped as the output of layer ``len(context)``, e.g. (N, C, h, w).
        context : list
            The contexts of layers 1 to ``len(context)``, as ``forward`` returns them.
        rule : ReluRule, optional
            How every ReLU on the way down treats the signal; ``RELU_RULES["saliency"]``
            makes the result the gradient of ``(output * signal).sum()``.
        down_to : int, optional
            The layer whose output the signal is mapped to; 0 for the input.

        Returns
        -------
        signal : torch.Tensor
            Shaped as the output of layer ``down_to``.
        """
        layers = list(self.wrapped)[down_to : len(context)]
        for module, ctx in zip(reversed(layers), reversed(context[down_to:]), strict=True):
            if isinstance(module, UndoableReLU):
                signal = module.undo(signal, ctx, rule)
            else:
                signal = module.undo(signal, ctx)
        return signal

    def layer_name(self, layer: int) -> str:
        """Human-readable name of ``layer`` (1-based), e.g. ``"5: Conv2d(64, 192, ...)"``."""
        return f"{layer}: {self.original[layer - 1]!r}"

    @torch.no_grad()
    def visualise(
        self,
        x: torch.Tensor,
        layer: int,
        k: int = DEFAULT_K,
        channel: int | None = None,
        method: str = DEFAULT_METHOD,
    ) -> Visualisation:
        """
        Project the top-k activations of ``layer`` back to the input space.

        Parameters
        ----------
        x : (N, C, H, W) torch.Tensor
            A batch of inputs; every sample keeps its own top-k activations.
        layer : int
            1-based index of the layer whose output is visualised.
        k : int, optional
            The number of activations to keep per sample.
        channel : int, optional
            Keep the top-k activations of this one feature map only (the paper's mode);
            by default, the top-k over all feature maps.
        method : {"deconvnet", "guided_backprop", "saliency"}, optional
            How every ReLU on the way down treats the signal (``RELU_RULES``); the kept
            activations and every other layer's undo are the same for all three.

        Returns
        -------
        visualisation : Visualisation
            The (N, C, H, W) projection and the kept activations.
        """
        if not 1 <= layer <= len(self.wrapped):
            raise ValueError(f"no layer '{layer}' in a {len(self.wrapped)}-layer network")
        rule = relu_rule(method)
        activations, context = self.forward(x, until=layer, keep_masks=rule.mask)  # (N, C, h, w)
        _n, c, h, w = activations.shape
        candidates = candidate_count((c, h, w), channel)
        if not 1 <= k <= candidates:
            raise ValueError(f"expected k in [1, {candidates}] for layer {layer} but received {k}")
        vals, indices = _top_k(activations, k, channel)
        signal = _scatter_kept(activations, indices, vals)
        return Visualisation(
            projection=self.undo(signal, context, rule),
            channel=indices // (h * w),
            y=indices % (h * w) // w,
            x=indices % w,
            value=vals,
            activation_shape=(c, h, w),
        )

    @torch.no_grad()
    def project(
        self,
        x: torch.Tensor,
        layer: int,
        channel: torch.Tensor,
        y: torch.Tensor,
        x_pos: torch.Tensor,
        method: str = DEFAULT_METHOD,
    ) -> torch.Tensor:
        """
        Project one chosen activation of ``layer`` per sample back to the input space.

        The same projection as ``visualise(..., k=1, channel=c)`` when the chosen activation
        is the one that keeps (the first maximum of its feature map), for any position.

        Parameters
        ----------
        x : (N, C, H, W) torch.Tensor
            A batch of inputs.
        layer : int
            1-based index of the layer whose activation is projected.
        channel, y, x_pos : (N,) torch.Tensor of int64
            The activation of each sample in the layer's (C, h, w) output.
        method : {"deconvnet", "guided_backprop", "saliency"}, optional
            How every ReLU on the way down treats the signal (``RELU_RULES``).

        Returns
        -------
        projection : (N, C, H, W) torch.Tensor
        """
        if not 1 <= layer <= len(self.wrapped):
            raise ValueError(f"no layer '{layer}' in a {len(self.wrapped)}-layer network")
        rule = relu_rule(method)
        activations, context = self.forward(x, until=layer, keep_masks=rule.mask)
        _n, _c, h, w = activations.shape
        indices = (channel * h * w + y * w + x_pos).to(activations.device).unsqueeze(1)  # (N, 1)
        vals = activations.flatten(1).gather(1, indices)
        return self.undo(_scatter_kept(activations, indices, vals), context, rule)

    def visualise_activations(self, x: torch.Tensor, layer: int | None = None, k: int = DEFAULT_K):
        """
        Visualise activations in input space.

        Parameters
        ---------
        x : (N, C, H, W) torch.Tensor
            The data for which the activations should be visualised.
        layer : int, optional
            The layer to visualise the activations for.
            By default, activations in the last layer are visualised.
        k : int, optional
            The number of activations to visualise.

        Returns
        -------
        visualisation : (N, C, H, W) torch.Tensor
            The visualisations with the same shape as `x`.
        """
        if layer is None:
            layer = len(self.original)
        if layer <= 0:
            return x
        if layer > len(self.original):
            raise ValueError(f"no layer '{layer}' in a {len(self.original)}-layer network")
        return self.visualise(x, layer, k).projection
