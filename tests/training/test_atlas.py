"""``python -m training atlas``: the atlas equals a brute-force scan in plain PyTorch, every
projection equals the visualiser's of that item, a stopped run resumes to the same atlas, and a
folder of images builds one for AlexNet."""

import json

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from service.engine.imaging import ImageSpec, decode_input
from service.models import (
    IMAGENET_NORMALISATION,
    UndoableSequential,
    load_checkpoint,
    load_torchvision_network,
)
from service.models.atlas import load_atlas
from training.__main__ import main
from training.data import load_mnist_5k

TOP = 9


def _brute_force(features, x: torch.Tensor, layer: int) -> list[list[tuple]]:
    """For every map: the (index, y, x, value) of the TOP items by their strongest activation,
    ties to the lower index, each item at the first (row-major) position of its maximum."""
    with torch.no_grad():
        out = features[:layer](x.clone())  # (N, C, h, w)
    n, c, h, w = out.shape
    flat = out.flatten(2)
    best = flat.amax(dim=2)  # (N, C)
    first = torch.where(flat == best[..., None], torch.arange(h * w), h * w).amin(dim=2)
    best, first = best.T.tolist(), first.T.tolist()  # (C, N)
    maps = []
    for channel in range(c):
        order = sorted(range(n), key=lambda i: (-best[channel][i], i))[:TOP]
        at = first[channel]
        maps.append([(i, at[i] // w, at[i] % w, best[channel][i]) for i in order])
    return maps


def _held_out_inputs(checkpoint) -> torch.Tensor:
    digits = load_mnist_5k().test_images  # (N, 28, 28) uint8
    return checkpoint.normalisation.normalise(digits.unsqueeze(1).float() / 255)


def _build(checkpoint_dir, out, *extra) -> int:
    argv = ["atlas", "--network", "cnn", "--checkpoints", str(checkpoint_dir)]
    return main([*argv, "--out", str(out), "--batch-size", "200", "--no-progress", *extra])


def test_the_cnn_atlas_equals_a_brute_force_scan_and_the_visualiser(checkpoint_dir, tmp_path):
    assert _build(checkpoint_dir, tmp_path) == 0
    atlas = load_atlas(tmp_path / "cnn.json")
    checkpoint = load_checkpoint(checkpoint_dir / "cnn")
    features = checkpoint.model.features
    x = _held_out_inputs(checkpoint)
    deconv = UndoableSequential(features).eval()
    assert sorted(atlas.layers) == list(range(1, len(features) + 1))
    assert atlas.document["dataset"] == {"name": "mnist-5k", "split": "heldout", "count": len(x)}
    for layer in atlas.layers:
        expected = _brute_force(features, x, layer)
        assert atlas.channels(layer) == len(expected)
        for channel, want in enumerate(expected):
            entries = atlas.entries(layer, channel)
            assert [(e.index, e.y, e.x) for e in entries] == [w[:3] for w in want], (layer, channel)
            values = torch.tensor([e.value for e in entries])
            torch.testing.assert_close(values, torch.tensor([w[3] for w in want]))
            for entry in entries:
                item = x[entry.index : entry.index + 1]
                seen = deconv.visualise(item, layer, k=1, channel=channel)
                assert (seen.y.item(), seen.x.item()) == (entry.y, entry.x)
                torch.testing.assert_close(entry.projection, seen.projection[0])
                torch.testing.assert_close(
                    entry.image, checkpoint.normalisation.denormalise(item)[0]
                )


def test_a_stopped_scan_resumes_to_the_same_atlas(checkpoint_dir, tmp_path, capsys):
    assert _build(checkpoint_dir, tmp_path / "whole", "--layers", "4,6") == 0
    stopped = ("--layers", "4,6", "--save-every", "1", "--stop-after", "2")
    assert _build(checkpoint_dir, tmp_path / "resumed", *stopped) == 1
    assert "stopped after 2 of 5 batches" in capsys.readouterr().err
    assert not (tmp_path / "resumed" / "cnn.json").exists()
    assert _build(checkpoint_dir, tmp_path / "resumed", "--layers", "4,6") == 0
    assert "resuming after 2 batches" in capsys.readouterr().out
    whole = load_file(tmp_path / "whole" / "cnn.safetensors")
    resumed = load_file(tmp_path / "resumed" / "cnn.safetensors")
    assert whole.keys() == resumed.keys()
    for name, tensor in whole.items():
        assert torch.equal(tensor, resumed[name]), name
    assert list((tmp_path / "resumed").iterdir()) != [] and not list(
        (tmp_path / "resumed").glob("*partial*")
    )


def test_if_stale_skips_a_current_atlas_and_rebuilds_a_stale_one(checkpoint_dir, tmp_path, capsys):
    assert _build(checkpoint_dir, tmp_path, "--layers", "1") == 0
    assert _build(checkpoint_dir, tmp_path, "--layers", "1", "--if-stale") == 0
    assert "the atlas is current, skipped" in capsys.readouterr().out
    document = json.loads((tmp_path / "cnn.json").read_text())
    (tmp_path / "cnn.json").write_text(json.dumps(document | {"weights_sha256": "0" * 64}))
    assert _build(checkpoint_dir, tmp_path, "--layers", "1", "--if-stale") == 0
    assert "wrote" in capsys.readouterr().out
    assert load_atlas(tmp_path / "cnn.json").weights_sha256 == document["weights_sha256"]


def _image_folder(root):
    """Three small images, PNG and JPEG, one in a sub-folder, and a file that is no image."""
    rng = np.random.default_rng(0)
    files = {"b.png": (30, 40), "a/c.jpg": (50, 20), "a.PNG": (24, 24)}
    for name, (height, width) in files.items():
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / name, format="PNG" if "png" in name.lower() else "JPEG")
    (root / "notes.txt").write_text("not an image")
    return ["a.PNG", "a/c.jpg", "b.png"]  # sorted path order


def test_a_folder_of_images_builds_an_alexnet_atlas(torch_home, tmp_path):
    order = _image_folder(tmp_path / "images")
    argv = ["atlas", "--network", "alexnet", "--data", str(tmp_path / "images")]
    assert main([*argv, "--out", str(tmp_path), "--layers", "1,3", "--no-progress"]) == 0
    atlas = load_atlas(tmp_path / "alexnet.json")
    assert atlas.document["dataset"]["count"] == 3 and atlas.document["top"] == 3
    features = load_torchvision_network("alexnet").features
    spec = ImageSpec(3, 224, IMAGENET_NORMALISATION, 256)
    # each item as /visualise prepares the upload
    x = torch.cat(
        [decode_input((tmp_path / "images" / n).read_bytes(), None, spec, 10**8) for n in order]
    )
    names = atlas.document["dataset"]["paths"]
    for layer in (1, 3):
        expected = _brute_force(features, x, layer)
        for channel in (0, 17, 63):
            entries = atlas.entries(layer, channel)
            assert [(e.index, e.y, e.x) for e in entries] == [w[:3] for w in expected[channel]]
            for entry in entries:
                assert names[str(entry.index)] == order[entry.index]
                torch.testing.assert_close(
                    entry.image,
                    IMAGENET_NORMALISATION.denormalise(x[entry.index : entry.index + 1])[0],
                )
                top, left, bottom, right = entry.box
                assert 0 <= top < bottom <= 224 and 0 <= left < right <= 224


def test_bad_options_are_clear_errors(checkpoint_dir, tmp_path, capsys):
    assert _build(checkpoint_dir, tmp_path, "--layers", "7") == 1
    assert "expected layers in [1, 6] but received [7]" in capsys.readouterr().err
    argv = ["atlas", "--network", "vae", "--checkpoints", str(checkpoint_dir), "--no-progress"]
    assert main(argv) == 1
    assert "expected a classifier or a torchvision network" in capsys.readouterr().err
    assert main([*argv[:1], "--network", "cnn", *argv[3:], "--data", str(tmp_path / "none")]) == 1
    assert "expected --data mnist-5k or a folder of images" in capsys.readouterr().err
