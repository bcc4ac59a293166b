"""The project's one home for model code, used by both the service and ``training``."""

from .autoencoder import ACTIVATIONS, AutoEncoder, ConvAEConfig, conv_decoder, conv_encoder
from .checkpoint import (
    CONFIGS,
    Checkpoint,
    CheckpointError,
    ModelConfig,
    checkpoint_paths,
    load_checkpoint,
    read_checkpoint_json,
    save_checkpoint,
    write_atomically,
)
from .cnn import CNNConfig, MnistCNN
from .deconvnet import (
    UndoableAvgPool2d,
    UndoableConv2d,
    UndoableMaxPool2d,
    UndoableReLU,
    UndoableSequential,
    Visualisation,
    keep_top_k,
)
from .device import exact_convolutions, resolve_device
from .losses import (
    ASSUMPTIONS,
    MNIST_NORMALISATION,
    Normalisation,
    ReconstructionLoss,
    RegularisedLoss,
    sample_range,
    target_transform,
    to_intensities,
)
from .prior import LabelPrior
from .torchvision_nets import (
    IMAGENET_NORMALISATION,
    TORCHVISION_NETWORKS,
    NetworkSpec,
    WeightsUnavailable,
    alexnet_features,
    load_torchvision_network,
)
from .vae import ConvVAEConfig, MLPVAEConfig, VariationalAutoEncoder, kl_divergence

__all__ = [
    "ACTIVATIONS",
    "ASSUMPTIONS",
    "CONFIGS",
    "IMAGENET_NORMALISATION",
    "MNIST_NORMALISATION",
    "TORCHVISION_NETWORKS",
    "alexnet_features",
    "AutoEncoder",
    "CNNConfig",
    "Checkpoint",
    "CheckpointError",
    "ConvAEConfig",
    "ConvVAEConfig",
    "LabelPrior",
    "MLPVAEConfig",
    "MnistCNN",
    "ModelConfig",
    "NetworkSpec",
    "Normalisation",
    "ReconstructionLoss",
    "RegularisedLoss",
    "UndoableAvgPool2d",
    "UndoableConv2d",
    "UndoableMaxPool2d",
    "UndoableReLU",
    "UndoableSequential",
    "VariationalAutoEncoder",
    "Visualisation",
    "WeightsUnavailable",
    "checkpoint_paths",
    "conv_decoder",
    "conv_encoder",
    "exact_convolutions",
    "keep_top_k",
    "kl_divergence",
    "load_checkpoint",
    "load_torchvision_network",
    "read_checkpoint_json",
    "resolve_device",
    "sample_range",
    "save_checkpoint",
    "target_transform",
    "to_intensities",
    "write_atomically",
]
