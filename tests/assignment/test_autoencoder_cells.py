"""Exercises 3 and 4 of the seed assignment: its test cells for the auto-encoder, assertions
unchanged."""

import torch
from torch import nn

from service.models import AutoEncoder


def test_ex3_encoder_has_enough_modules():
    ae = AutoEncoder(1, 1, 1, 3)
    assert len(ae.encoder) > 3, "ex3: encoder has too little modules (-1 point)"


def test_ex3_decoder_has_enough_modules():
    ae = AutoEncoder(1, 1, 1, 3)
    assert len(ae.decoder) > 3, "ex3: decoder has too little modules (-1 point)"


def test_ex3_reconstruction_has_input_shape():
    ae = AutoEncoder(1, 16, 8, 5)
    x = torch.randn(1, 1, 28, 28)
    y = ae(x)
    assert x.shape == y.shape, (
        f"ex3: reconstructed input has different shape: {tuple(y.shape)} (-0.5 points)"
    )


def test_ex4_reconstruction_range():
    # the assignment's exercise 4 cell, on an untrained model
    auto_encoder = AutoEncoder(1, 64, 16, 5, activation=nn.ELU(), assumption="binomial")
    x_rec = auto_encoder.reconstruct(torch.randn(16, 1, 28, 28))
    assert x_rec.min() >= 0 and x_rec.max() <= 1, (
        "ex4: invalid range for reconstructed values: "
        f"[{x_rec.min().item(), x_rec.max().item()}] (-1 point)"
    )
