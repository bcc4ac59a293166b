"""The real Open Inference Protocol client, ``tritonclient[http]``, against ``python -m service``:
one model of each kind (auto-encoder, VAE, classifier, torchvision network), JSON and binary
tensors, and the answers equal the native routes'."""

import io
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import png_bytes
from tests.servers import ROOT, running_service, served_checkpoints

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


def _key() -> dict:
    """The API key header, a new dict each call: tritonclient's infer() writes its
    Inference-Header-Content-Length into the headers it is given."""
    return {"X-API-Key": "k"}


@pytest.fixture(scope="module")
def service(checkpoint_dir, hub_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("v2")
    checkpoints = served_checkpoints(checkpoint_dir, directory / "checkpoints")
    with running_service(
        checkpoints,
        directory / "server.log",
        module="devkit.fake_weights",
        TORCH_HOME=str(hub_dir),
        UNCONV_NETWORKS="alexnet",
        UNCONV_API_KEY="k",
    ) as (_, url):
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        try:
            with httpx.Client(base_url=url, headers=_key(), timeout=60) as http:
                yield client, http
        finally:
            client.close()


def _pixels(png: bytes) -> np.ndarray:
    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32) / 255.0
    return image[None, None]


def _input(name: str, array: np.ndarray, binary: bool):
    tensor = httpclient.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def _outputs(names, binary: bool):
    return [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]


def test_server_and_models_as_tritonclient_sees_them(service):
    client, _ = service
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "unconv"
    for name in ("ae", "vae", "cnn", "alexnet"):
        assert client.is_model_ready(name, headers=_key())
    metadata = client.get_model_metadata("alexnet", headers=_key())
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    with pytest.raises(InferenceServerException, match="no model 'gan'") as err:
        client.get_model_metadata("gan", headers=_key())
    assert err.value.status() == "404"


@pytest.mark.parametrize("binary", [False, True])
def test_vae_and_ae_equal_reconstruct(service, binary):
    client, http = service
    pngs = [png_bytes(seed=s) for s in (11, 12)]
    x = np.concatenate([_pixels(p) for p in pngs])
    files = [("file", (f"{i}.png", p, "image/png")) for i, p in enumerate(pngs)]
    native = http.post("/reconstruct", files=files, data={"model": "vae", "format": "json"}).json()
    result = client.infer(
        "vae",
        [_input("image", x, binary)],
        outputs=_outputs(["reconstruction", "mean", "log_var"], binary),
        headers=_key(),
    )
    np.testing.assert_allclose(
        result.as_numpy("mean"), [i["mean"] for i in native["images"]], atol=1e-5
    )
    np.testing.assert_allclose(
        result.as_numpy("log_var"), [i["log_var"] for i in native["images"]], atol=1e-5
    )
    for model in ("vae", "ae"):
        answer = client.infer(model, [_input("image", x, binary)], headers=_key())
        reconstruction = answer.as_numpy("reconstruction")
        assert reconstruction.shape == (2, 1, 28, 28)
        for i, png in enumerate(pngs):
            one = http.post("/reconstruct", files={"file": ("x.png", png)}, data={"model": model})
            pixels = np.asarray(Image.open(io.BytesIO(one.content)), dtype=np.float32)
            assert np.abs(np.round(reconstruction[i, 0] * 255) - pixels).max() <= 1


@pytest.mark.parametrize("binary", [False, True])
def test_vae_samples_equal_generate(service, binary):
    client, http = service
    result = client.infer(
        "vae",
        [],
        outputs=_outputs(["generated", "z"], binary),
        parameters={"n": 4, "seed": 3},
        headers=_key(),
    )
    native = http.post("/generate", json={"n": 4, "seed": 3, "format": "npy"})
    expected = np.load(io.BytesIO(native.content))
    np.testing.assert_allclose(result.as_numpy("generated"), expected, atol=1e-6)
    decoded = client.infer("vae", [_input("z", result.as_numpy("z"), binary)], headers=_key())
    np.testing.assert_allclose(decoded.as_numpy("generated"), expected, atol=1e-6)


@pytest.mark.parametrize(
    "model, png, binary",
    [
        ("cnn", png_bytes(seed=21), False),
        ("cnn", png_bytes(seed=21), True),
        ("alexnet", png_bytes((224, 224), "RGB", seed=22), True),
    ],
)
def test_networks_equal_visualise(service, model, png, binary):
    client, http = service
    image = Image.open(io.BytesIO(png))
    x = (np.asarray(image, dtype=np.float32) / 255.0).reshape(1, *image.size[::-1], -1)
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    parameters = {"layer": 3, "k": 4}
    result = client.infer(
        model, [_input("image", x, binary)], parameters=parameters, headers=_key()
    )
    fields = {"network": model, "layer": "3", "k": "4"}
    files = {"file": ("x.png", png, "image/png")}
    npy = http.post("/visualise", files=files, data=fields | {"format": "npy"})
    np.testing.assert_allclose(
        result.as_numpy("projection")[0], np.load(io.BytesIO(npy.content)), atol=1e-4
    )
    native = http.post("/visualise", files=files, data=fields | {"format": "json"}).json()
    kept = [[a["channel"], a["y"], a["x"]] for a in native["activations"]]
    assert result.as_numpy("activations")[0].tolist() == kept
    values = [a["value"] for a in native["activations"]]
    np.testing.assert_allclose(result.as_numpy("activation_values")[0], values, rtol=1e-5)


def test_a_bad_request_is_the_clients_exception_with_the_message(service):
    client, _ = service
    x = np.zeros((1, 1, 28, 27), np.float32)
    with pytest.raises(InferenceServerException, match="expected shape") as err:
        client.infer("ae", [_input("image", x, True)], headers=_key())
    assert err.value.status() == "400"


def test_the_readme_example_runs(checkpoint_dir, tmp_path):
    """docs/protocol.md's "Standard clients" example, as written, against a service without a
    key."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    section = doc.split("## Standard clients", 1)[1].split("\n## ", 1)[0]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    with running_service(checkpoints, tmp_path / "server.log") as (_, url):
        code = example.replace("127.0.0.1:8000", url.removeprefix("http://"))
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    assert "(2, 1, 28, 28) (2, 6)" in done.stdout  # conftest's VAE has 6 latent dimensions
    assert "(8, 1, 28, 28) (2, 1, 28, 28)" in done.stdout


def test_the_model_repository_through_tritonclient(checkpoint_dir, tmp_path):
    """get_model_repository_index, unload_model and load_model against python -m service with
    UNCONV_MODEL_CONTROL=explicit, one worker (tests/service/test_workers.py has two)."""
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    env = {"UNCONV_MODEL_CONTROL": "explicit", "UNCONV_API_KEY": "k", "UNCONV_WORKERS": "1"}
    with running_service(checkpoints, tmp_path / "one.log", **env) as (_, url):
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        try:
            index = client.get_model_repository_index(headers=_key())
            assert {(m["name"], m["state"]) for m in index} == {
                ("ae", "READY"),
                ("vae", "READY"),
                ("cnn", "READY"),
            }
            client.unload_model("ae", headers=_key())
            assert not client.is_model_ready("ae", headers=_key())
            client.load_model("ae", headers=_key())
            assert client.is_model_ready("ae", headers=_key())
            with pytest.raises(InferenceServerException) as err:
                client.load_model("ae")  # no key
            assert err.value.status() == "401"
            # a model sent in the request is refused, not silently ignored
            with pytest.raises(InferenceServerException) as err:
                client.load_model("ae", config='{"backend": "onnxruntime"}', headers=_key())
            assert err.value.status() == "422" and "'config'" in err.value.message()
            assert client.is_model_ready("ae", headers=_key())
        finally:
            client.close()
