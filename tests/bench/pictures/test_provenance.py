"""bench.pictures.provenance: a picture's record names the checkpoints the service served, as
their own files describe them, and refuses a service that serves other weights."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image

from bench.pictures import provenance


def _served(checkpoint_dir, name, kind="vae", sha=None):
    sha = sha or hashlib.sha256((checkpoint_dir / f"{name}.safetensors").read_bytes()).hexdigest()
    return {"name": name, "kind": kind, "available": True, "metadata": {"sha256": sha[:16]}}


def test_a_checkpoint_is_recorded_as_its_json_file_describes_it(checkpoint_dir):
    record = provenance.served_records([_served(checkpoint_dir, "vae")], checkpoint_dir)["vae"]
    document = json.loads((checkpoint_dir / "vae.json").read_text())
    weights = (checkpoint_dir / "vae.safetensors").read_bytes()
    assert record["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert (record["architecture"], record["config"]) == ("conv-vae", document["config"])
    assert record["training"]["epochs"] == 0 and record["training"]["data"] == "synthetic"


def test_a_service_serving_other_weights_is_refused(checkpoint_dir):
    served = [_served(checkpoint_dir, "ae", "autoencoder", sha="0" * 64)]
    with pytest.raises(SystemExit, match="other 'ae' weights"):
        provenance.served_records(served, checkpoint_dir)


def test_networks_and_unavailable_models_have_no_checkpoint_record(checkpoint_dir):
    served = [{"name": "alexnet", "kind": "network", "available": True, "metadata": {}}]
    served.append({"name": "gone", "kind": "vae", "available": False, "metadata": {}})
    assert provenance.served_records(served, checkpoint_dir) == {}


def test_a_record_keeps_the_other_pictures_and_only_the_checkpoints_shown(checkpoint_dir, tmp_path):
    served = [_served(checkpoint_dir, "vae"), _served(checkpoint_dir, "cnn", "classifier")]
    models = provenance.served_records(served, checkpoint_dir)
    for name in ("a.png", "b.png"):
        Image.new("L", (2, 2), len(name)).save(tmp_path / name)
    provenance.record(tmp_path, {"a.png": ["vae"]}, "python -m x", models)
    provenance.record(tmp_path, {"b.png": ["cnn"]}, "python -m y", models)
    known = json.loads((tmp_path / "provenance.json").read_text())
    assert known["pictures"]["a.png"]["command"] == "python -m x"  # kept
    assert known["pictures"]["b.png"]["checkpoints"] == {"cnn": models["cnn"]["weights_sha256"]}
    png = hashlib.sha256((tmp_path / "b.png").read_bytes()).hexdigest()
    assert known["pictures"]["b.png"]["sha256"] == png
    shown = {models["vae"]["weights_sha256"], models["cnn"]["weights_sha256"]}
    assert set(known["checkpoints"]) == shown
    provenance.record(tmp_path, {"a.png": ["cnn"]}, "python -m x", models)
    known = json.loads((tmp_path / "provenance.json").read_text())
    assert set(known["checkpoints"]) == {models["cnn"]["weights_sha256"]}  # the vae no longer
