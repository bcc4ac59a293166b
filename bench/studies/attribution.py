"""/attribute's four methods on the served cnn and on AlexNet: their cost per image and a
picture on held-out digits, for docs/methods.md (``python -m bench.studies.methods``)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from torchvision import models

from service.engine.imaging import attribution_to_image
from service.models import (
    ATTRIBUTION_METHODS,
    DEFAULT_STEPS,
    MNIST_NORMALISATION,
    OcclusionDefaults,
    UndoableClassifier,
    gradcam,
    guided_gradcam,
    integrated_gradients,
    occlusion,
)

from .common import pyplot

BATCH = 64  # passes per batch for integrated gradients and occlusion (the service's default)


def attribute(net: UndoableClassifier, x: torch.Tensor, method: str) -> torch.Tensor:
    """(1, C, H, W) image -> its map for the predicted class, with the service's defaults."""
    logits = net.logits(x)
    target = logits.argmax(dim=1)
    if method == "gradcam":
        return gradcam(net, x, target)[1]
    if method == "guided_gradcam":
        return guided_gradcam(net, x, target)[1]
    if method == "integrated_gradients":
        return integrated_gradients(net, x, target, DEFAULT_STEPS, BATCH)
    defaults = OcclusionDefaults.of(x.shape[-1])
    return occlusion(net, x, target, defaults.window, defaults.stride, BATCH)


def ms_per_image(net: UndoableClassifier, images: torch.Tensor) -> dict[str, float]:
    """Median milliseconds of one image's map per method, in process, on the calling thread's
    threads (the predicted class's logit, the service's defaults)."""
    costs = {}
    for method in ATTRIBUTION_METHODS:
        attribute(net, images[:1], method)  # warm up
        times = []
        for image in images.split(1):
            start = time.perf_counter()
            attribute(net, image, method)
            times.append(time.perf_counter() - start)
        costs[method] = 1000 * statistics.median(times)
    return costs


def alexnet_ms_per_image(repeats: int) -> dict[str, float]:
    """``ms_per_image`` on AlexNet with random weights and (3, 224, 224) random images."""
    torch.manual_seed(0)
    alexnet = models.alexnet().eval()
    head = torch.nn.Sequential(alexnet.avgpool, torch.nn.Flatten(1), *alexnet.classifier)
    net = UndoableClassifier(alexnet.features, head).eval()
    return ms_per_image(net, torch.randn(repeats, 3, 224, 224))


def picture(net: UndoableClassifier, pixels: torch.Tensor, path: Path) -> None:
    """Rows: (N, 28, 28) uint8 held-out digits; columns: the digit, then each method's map of
    its predicted class over it (warm where the map is positive, cool where negative)."""
    plt = pyplot()
    intensities = pixels.float().unsqueeze(1) / 255
    x = MNIST_NORMALISATION.normalise(intensities)
    fig, axes = plt.subplots(len(pixels), 5, figsize=(1.6 * 5, 1.6 * len(pixels)))
    for row in range(len(pixels)):
        image = x[row : row + 1]
        predicted = net.logits(image).argmax().item()
        axes[row, 0].imshow(intensities[row, 0], cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_ylabel(f"predicted {predicted}", fontsize=8)
        for column, method in enumerate(ATTRIBUTION_METHODS, start=1):
            overlay = attribution_to_image(intensities[row], attribute(net, image, method)[0])
            axes[row, column].imshow(overlay.permute(1, 2, 0).numpy())
            if row == 0:
                axes[row, column].set_title(method, fontsize=8)
    axes[0, 0].set_title("input", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def measure(
    net: UndoableClassifier,
    digits: torch.Tensor,
    shown: tuple[int, ...],
    docs: Path,
    timed: int,
    alexnet_images: int,
) -> dict:
    """The picture of the ``shown`` held-out digits (indices into ``digits``, (N, 28, 28)
    uint8) and the four methods' costs per image: docs/methods.json's ``attribution``."""
    with torch.inference_mode():
        picture(net, digits[list(shown)], docs / "images" / "attribution-cnn.png")
        x = MNIST_NORMALISATION.normalise(digits[:timed].float()[:, None] / 255)
        return {
            "picture": "images/attribution-cnn.png",
            "digits": list(shown),
            "steps": DEFAULT_STEPS,
            "batch": BATCH,
            "timed_images": timed,
            "alexnet_images": alexnet_images,
            "cnn_ms_per_image": ms_per_image(net, x),
            "alexnet_ms_per_image": alexnet_ms_per_image(alexnet_images),
        }


# what each of the seven methods answers, and its paper
SEVEN = [
    ("deconvnet", "/visualise", "what in the image made a layer's strongest activations fire",
     "Zeiler & Fergus (2014)"),
    ("guided_backprop", "/visualise", "the same, kept where the forward pass was open too",
     "Springenberg et al. (2015)"),
    ("saliency", "/visualise", "which pixels change those activations most (the gradient)",
     "Simonyan et al. (2014)"),
    ("gradcam", "/attribute", "where a layer's feature maps speak for a class",
     "Selvaraju et al. (2017)"),
    ("guided_gradcam", "/attribute", "which fine details speak for a class, where Grad-CAM "
     "points", "Selvaraju et al. (2017)"),
    ("integrated_gradients", "/attribute", "how much each pixel adds to a class's score "
     "against a black image", "Sundararajan et al. (2017)"),
    ("occlusion", "/attribute", "how far a class's score falls when a square hides the "
     "pixel", "Zeiler & Fergus (2014), Figure 7"),
]  # fmt: skip


def section(data: dict, visualise_methods) -> list[str]:
    """docs/methods.md's section on the seven methods (``visualise_methods``, then
    /attribute's four) from docs/methods.json's ``data``."""
    found = data["attribution"]
    last = data["layers"][-1]
    cnn = {m: last["ms_per_image"][m] for m in visualise_methods} | found["cnn_ms_per_image"]
    alexnet = data["alexnet_ms_per_image"] | found["alexnet_ms_per_image"]
    lines = [
        "## Seven methods",
        "",
        "`/attribute` asks the question people ask next: what in this image made the network "
        "predict this class. Its four methods explain one class's logit (`target`, by default "
        "the predicted class); each equals Captum on the same logits in the suite "
        "(tests/service/models/test_attribution.py, tests/service/api/test_attribute.py).",
        "",
        "| method | route | what it answers | paper | ms per image: cnn | ms per image: AlexNet |",
        "|---|---|---|---|---|---|",
    ]
    for method, route, answers, paper in SEVEN:
        lines.append(
            f"| `{method}` | {route} | {answers} | {paper} | {cnn[method]:.1f} | "
            f"{alexnet[method]:.0f} |"
        )
    lines += [
        "",
        f"Costs: medians of single-image calls in process on one thread; /visualise's at the "
        f"last layer (cnn {last['layer']}, AlexNet 13) with k = {data['k']}, /attribute's "
        f"with its defaults (the last convolution's ReLU, {found['steps']} steps, occlusion's "
        "window and stride of `/models`) in batches of "
        f"{found['batch']} passes; the cnn's over {found['timed_images']} digits, AlexNet's "
        f"(random weights, 224x224) over {found['alexnet_images']} random images.",
        "",
        "| `/attribute` method | Captum, on the same logits | `format=npy` |",
        "|---|---|---|",
        "| `gradcam` | `LayerGradCam(relu_attributions=True)` at `layer`, then "
        '`LayerAttribution.interpolate(..., "bilinear")` | (1, H, W), non-negative |',
        "| `guided_gradcam` | `GuidedGradCam` (its defaults: nearest upsampling) | (C, H, W) |",
        "| `integrated_gradients` | `IntegratedGradients`, zero baseline, `n_steps=steps` "
        "(Gauss-Legendre) | (C, H, W) |",
        "| `occlusion` | `Occlusion`, window `(C, window, window)`, strides `(C, stride, "
        "stride)`, zero baseline | (1, H, W): the same for every channel |",
        "",
        "Captum asks for `stride <= window`; the service also takes a longer stride, where "
        "pixels that no window covers get 0. Integrated gradients' steps and occlusion's "
        "windows are many passes of one image; the service sends them through the network in "
        "batches shared with other requests' passes (docs/benchmarks.md compares its rate "
        "with Captum's).",
        "",
        f"![The four /attribute methods on held-out digits]({found['picture']})",
        "",
        f"Rows: {len(found['digits'])} held-out digits and the served cnn's predicted class; "
        "columns: the input, then each method's map of that class over it, warm where it "
        "raises the class's logit, cool where it lowers it (the page's and `format=png`'s "
        "drawing).",
        "",
    ]
    return lines
