"""The scan's pieces against plain Python: every map's first maximum (also after an in-place
ReLU whose input is negative everywhere), and the top-k merge with many ties, batch by batch
and in any order of its candidates."""

import pytest
import torch
from torch import nn

from training.atlas_scan import EMPTY, empty_top, merge_layer, scan_batch, select


def _first_maxima(maps: torch.Tensor) -> tuple[list, list]:
    """(N, C, h, w) -> per item and map, the maximum and its first row-major position."""
    values, positions = [], []
    for item in maps.flatten(2).tolist():
        values.append([max(m) for m in item])
        positions.append([m.index(max(m)) for m in item])
    return values, positions


@pytest.mark.parametrize(
    "size", [(4, 6), (5, 7)]
)  # pooled whole, or its last row and column dropped
def test_a_scanned_batch_keeps_each_maps_first_maximum(size):
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        conv.bias.zero_()
    stack = nn.Sequential(conv, nn.ReLU(inplace=True), nn.MaxPool2d(2))
    x = torch.randint(1, 4, (5, 1, *size)).float()  # ties; map 1 of the ReLU is all zeros
    x[0, 0, -1, -1] = 9.0  # the maximum, where the pooling may not reach
    h, w = size
    shapes = {1: (2, h, w), 2: (2, h, w), 3: (2, h // 2, w // 2)}
    top = empty_top(shapes, 5, torch.device("cpu"))  # room for every item
    top = scan_batch(stack, x, torch.arange(5), top)
    for layer, (_c, _h, width) in shapes.items():
        with torch.no_grad():
            want_values, want_positions = _first_maxima(stack[:layer](x.clone()))
        value, where = top[layer]
        for channel in range(2):
            order = _python_top([[v[channel]] for v in want_values], 5)[0]
            assert where[channel, :, 0].tolist() == order, (layer, channel)
            assert value[channel].tolist() == [want_values[i][channel] for i in order]
            at = [want_positions[i][channel] for i in order]
            assert where[channel, :, 1].tolist() == [p // width for p in at], (layer, channel)
            assert where[channel, :, 2].tolist() == [p % width for p in at], (layer, channel)


def _python_top(values: list[list[float]], k: int) -> list[list[int]]:
    """values[item][map] -> for each map the k items by value, ties to the lower item."""
    maps = len(values[0])
    return [sorted(range(len(values)), key=lambda i: (-values[i][c], i))[:k] for c in range(maps)]


def test_merging_batches_keeps_the_top_k_with_ties_to_the_lower_index():
    torch.manual_seed(0)
    values = torch.randint(0, 4, (23, 3)).float()  # (items, maps): many ties
    positions = torch.randint(0, 12, (23, 3))
    value, where = empty_top({1: (3, 3, 4)}, 5, torch.device("cpu"))[1]
    for start in range(0, 23, 7):
        part = slice(start, start + 7)

        def locate(items, channels, part=part):
            at = positions[part][items, channels]
            return at // 4, at % 4

        indices = torch.arange(start, min(start + 7, 23))
        value, where = merge_layer(value, where, values[part], indices, locate)
    want = _python_top(values.tolist(), 5)
    assert where[..., 0].tolist() == want
    for c in range(3):
        assert value[c].tolist() == [values[i, c].item() for i in want[c]]
        assert where[c, :, 1].tolist() == [positions[i, c].item() // 4 for i in want[c]]
        assert where[c, :, 2].tolist() == [positions[i, c].item() % 4 for i in want[c]]


def test_select_orders_candidates_given_in_any_order():
    torch.manual_seed(1)
    value = torch.randint(0, 3, (2, 12)).float()
    index = torch.stack([torch.randperm(12), torch.randperm(12)])
    index[0, 3] = EMPTY  # an empty slot sorts last
    value[0, 3] = float("-inf")
    where = torch.stack([index, index * 2, index * 3], dim=-1)
    top_value, top_where = select(value, where, 4)
    for c in range(2):
        pairs = sorted(
            zip(value[c].tolist(), index[c].tolist(), strict=True), key=lambda p: (-p[0], p[1])
        )
        assert (
            list(zip(top_value[c].tolist(), top_where[c, :, 0].tolist(), strict=True)) == pairs[:4]
        )
        assert top_where[c, :, 1].tolist() == [2 * i for _v, i in pairs[:4]]
