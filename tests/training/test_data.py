"""Data: the bundled mnist-5k split and the auto-encoding wrapper."""

import pytest
import torch

from training.data import (
    AutoMNIST,
    DataUnavailable,
    load_images,
    load_mnist_5k,
    random_shift,
    split_by_label,
)


def test_mnist_5k_holds_out_100_of_every_digit():
    splits = load_mnist_5k()
    assert splits.train_images.shape == (4000, 28, 28) and splits.train_images.dtype == torch.uint8
    assert splits.test_images.shape == (1000, 28, 28)
    assert torch.equal(splits.train_labels.bincount(), torch.full((10,), 400))
    assert torch.equal(splits.test_labels.bincount(), torch.full((10,), 100))
    train = {bytes(img.numpy()) for img in splits.train_images}
    assert not any(bytes(img.numpy()) in train for img in splits.test_images)


def test_split_by_label_takes_the_first_rows_of_each_label():
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    train, held_out = split_by_label(labels, 2)
    assert train.tolist() == [0, 1, 3, 4, 6, 7] and held_out.tolist() == [2, 5, 8]


def test_missing_torchvision_data_names_its_path(tmp_path):
    with pytest.raises(DataUnavailable, match=rf"mnist not found under {tmp_path}"):
        load_images("mnist", tmp_path, download=False)


def test_auto_mnist_transforms_input_and_target_apart():
    images = torch.tensor([[[0, 255], [128, 64]]], dtype=torch.uint8)
    data = AutoMNIST(
        images, transform=lambda p: p * 2, target_transform=lambda p: (p > 0.5).float()
    )
    x, y = data[0]
    assert x.shape == y.shape == (1, 2, 2)
    torch.testing.assert_close(x, torch.tensor([[[0.0, 2.0], [256 / 255, 128 / 255]]]))
    assert torch.equal(y, torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]))
    assert len(data) == 1


def test_random_shift_translates_each_image_within_bounds():
    x = torch.zeros(50, 1, 9, 9)
    x[:, :, 4, 4] = 1.0
    shifted = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape and torch.equal(shifted.sum((1, 2, 3)), torch.ones(50))
    where = shifted[:, 0].flatten(1).argmax(1)
    rows, cols = where // 9, where % 9
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 5
