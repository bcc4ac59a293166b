"""The Open Inference Protocol routes (service/api/v2.py): metadata, inference of every kind
of model equal to the native routes' answers and to plain torch, the binary tensor data
extension, and the protocol's 400 for every kind of bad request."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from service.models import MNIST_NORMALISATION, load_checkpoint
from tests.helpers import png_bytes


def _pixels(png: bytes) -> np.ndarray:
    """(1, 1, 28, 28) float32 intensities of a grey PNG, as a client would send them."""
    return (np.asarray(Image.open(io.BytesIO(png)), dtype=np.float32) / 255.0)[None, None]


def _json_input(name, array, datatype="FP32"):
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": datatype,
        "data": array.ravel().tolist(),
    }


def _binary_body(document: dict, arrays: list[np.ndarray]) -> tuple[bytes, dict]:
    """Triton's binary layout, written independently: JSON, then each input's raw bytes."""
    text = json.dumps(document).encode()
    body = text + b"".join(np.ascontiguousarray(a, "<f4").tobytes() for a in arrays)
    return body, {"Inference-Header-Content-Length": str(len(text))}


def _split_binary(response) -> tuple[dict, dict[str, np.ndarray]]:
    size = int(response.headers["Inference-Header-Content-Length"])
    document = json.loads(response.content[:size])
    arrays, offset = {}, size
    for output in document["outputs"]:
        if "data" in output:
            continue
        dtype = {"FP32": "<f4", "INT64": "<i8"}[output["datatype"]]
        length = output["parameters"]["binary_data_size"]
        data = np.frombuffer(response.content[offset : offset + length], dtype)
        arrays[output["name"]] = data.reshape(output["shape"])
        offset += length
    assert offset == len(response.content)
    return document, arrays


def _outputs(document) -> dict[str, np.ndarray]:
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in document["outputs"]}


async def test_server_and_model_metadata(make_client):
    client, _ = await make_client()
    server = (await client.get("/v2")).json()
    assert server["name"] == "unconv" and "binary_tensor_data" in server["extensions"]
    vae = (await client.get("/v2/models/vae")).json()
    assert vae["versions"] == ["1"]
    assert {i["name"]: i["shape"] for i in vae["inputs"]} == {
        "image": [-1, 1, 28, 28],
        "z": [-1, 6],  # conftest's latent_features
    }
    assert [o["name"] for o in vae["outputs"]] == [
        "reconstruction",
        "mean",
        "log_var",
        "generated",
        "z",
    ]
    cnn = (await client.get("/v2/models/cnn/versions/1")).json()
    assert [(o["name"], o["datatype"]) for o in cnn["outputs"]] == [
        ("projection", "FP32"),
        ("activations", "INT64"),
        ("activation_values", "FP32"),
    ]
    assert (await client.get("/v2/models/ae/ready")).status_code == 200
    missing = await client.get("/v2/models/gan/ready")
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_model"
    assert (await client.get("/v2/models/ae/versions/2")).status_code == 404
    broken = await client.get("/v2/models/broken")
    # a model that does not load is not loaded, as Triton says (its reason in the message)
    assert broken.status_code == 404 and broken.json()["code"] == "model_not_loaded"
    assert "broken" in broken.json()["error"]


async def test_ae_reconstruction_equals_plain_torch_and_the_native_route(
    make_client, checkpoint_dir
):
    client, _ = await make_client()
    png = png_bytes(seed=3)
    x = _pixels(png)
    r = await client.post("/v2/models/ae/infer", json={"inputs": [_json_input("image", x)]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    reconstruction = _outputs(r.json())["reconstruction"]
    net = load_checkpoint(checkpoint_dir / "ae", torch.device("cpu")).model
    with torch.inference_mode():
        expected = net.reconstruct(MNIST_NORMALISATION.normalise(torch.from_numpy(x)))
    np.testing.assert_allclose(reconstruction, expected.numpy(), atol=1e-5)
    native = await client.post(
        "/reconstruct", files={"file": ("x.png", png, "image/png")}, data={"model": "ae"}
    )
    native_pixels = np.asarray(Image.open(io.BytesIO(native.content)), dtype=np.float32)
    assert np.abs(np.round(reconstruction[0, 0] * 255) - native_pixels).max() <= 1


async def test_vae_latents_equal_the_native_route_in_binary(make_client):
    client, _ = await make_client()
    pngs = [png_bytes(seed=s) for s in (1, 2)]
    x = np.concatenate([_pixels(p) for p in pngs])
    document = {
        "inputs": [
            {
                "name": "image",
                "shape": list(x.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": x.nbytes},
            }
        ],
        "outputs": [{"name": "mean", "parameters": {"binary_data": True}}, {"name": "log_var"}],
    }
    body, headers = _binary_body(document, [x])
    r = await client.post("/v2/models/vae/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    answer, binary = _split_binary(r)
    assert [o["name"] for o in answer["outputs"]] == ["mean", "log_var"]
    assert "data" in answer["outputs"][1] and "data" not in answer["outputs"][0]
    files = [("file", (f"{i}.png", p, "image/png")) for i, p in enumerate(pngs)]
    native = (
        await client.post("/reconstruct", files=files, data={"model": "vae", "format": "json"})
    ).json()
    np.testing.assert_allclose(binary["mean"], [i["mean"] for i in native["images"]], atol=1e-5)
    log_var = np.array(answer["outputs"][1]["data"]).reshape(2, 6)
    np.testing.assert_allclose(log_var, [i["log_var"] for i in native["images"]], atol=1e-5)


async def test_vae_sampling_and_decoding_equal_generate(make_client):
    client, _ = await make_client()
    r = await client.post(
        "/v2/models/vae/infer",
        json={"inputs": [], "parameters": {"n": 3, "seed": 7, "binary_data_output": True}},
    )
    assert r.status_code == 200, r.text
    answer, arrays = _split_binary(r)
    assert answer["parameters"] == {"seed": 7}
    native = await client.post("/generate", json={"n": 3, "seed": 7, "format": "npy"})
    np.testing.assert_allclose(arrays["generated"], np.load(io.BytesIO(native.content)), atol=1e-6)
    z = arrays["z"].copy()
    decoded = await client.post("/v2/models/vae/infer", json={"inputs": [_json_input("z", z)]})
    np.testing.assert_allclose(
        _outputs(decoded.json())["generated"], arrays["generated"], atol=1e-6
    )


async def test_visualise_equals_the_native_route(make_client):
    client, _ = await make_client()
    pngs = [png_bytes(seed=s) for s in (4, 5)]
    x = np.concatenate([_pixels(p) for p in pngs])
    parameters = {"layer": 4, "k": 3, "channel": 2}
    r = await client.post(
        "/v2/models/cnn/infer", json={"inputs": [_json_input("image", x)], "parameters": parameters}
    )
    assert r.status_code == 200, r.text
    out = _outputs(r.json())
    assert out["projection"].shape == (2, 1, 28, 28)
    assert out["activations"].shape == (2, 3, 3) and out["activation_values"].shape == (2, 3)
    for i, png in enumerate(pngs):
        fields = {"network": "cnn", **{k: str(v) for k, v in parameters.items()}}
        files = {"file": ("x.png", png, "image/png")}
        npy = await client.post("/visualise", files=files, data=fields | {"format": "npy"})
        np.testing.assert_allclose(
            out["projection"][i], np.load(io.BytesIO(npy.content)), atol=1e-5
        )
        native = (
            await client.post("/visualise", files=files, data=fields | {"format": "json"})
        ).json()
        kept = [[a["channel"], a["y"], a["x"]] for a in native["activations"]]
        assert out["activations"][i].tolist() == kept
        assert (out["activations"][i][:, 0] == 2).all()


async def test_method_equals_the_native_route_for_guided_backprop(make_client):
    """``method`` as /visualise takes it; guided backpropagation's projection is the native
    route's, and not deconvnet's (so the parameter is not ignored)."""
    client, _ = await make_client()
    png = png_bytes(seed=6)
    image = _json_input("image", _pixels(png))
    answers = {}
    for method in ("guided_backprop", "deconvnet"):
        parameters = {"layer": 5, "k": 4, "method": method}
        r = await client.post(
            "/v2/models/cnn/infer", json={"inputs": [image], "parameters": parameters}
        )
        assert r.status_code == 200, r.text
        answers[method] = _outputs(r.json())["projection"][0]
    fields = {"network": "cnn", "layer": "5", "k": "4", "method": "guided_backprop"}
    files = {"file": ("x.png", png, "image/png")}
    npy = await client.post("/visualise", files=files, data=fields | {"format": "npy"})
    native = np.load(io.BytesIO(npy.content))
    np.testing.assert_allclose(answers["guided_backprop"], native, atol=1e-5)
    assert np.abs(answers["deconvnet"] - native).max() > 1e-3
    bad = {"inputs": [image], "parameters": {"layer": 5, "method": "gradcam"}}
    r = await client.post("/v2/models/cnn/infer", json=bad)
    assert r.status_code == 400 and "deconvnet" in r.json()["error"], r.text


def _image_request(shape=(1, 1, 28, 28), **changes):
    tensor = {
        "name": "image",
        "shape": list(shape),
        "datatype": "FP32",
        "data": [0.5] * int(np.prod(shape)),
    }
    return {"inputs": [tensor | changes]}


@pytest.mark.parametrize(
    "model, body, headers, message",
    [
        ("ae", _image_request(name="picture"), {}, "unknown input 'picture'"),
        ("ae", _image_request(name={}), {}, "unknown input {}"),
        ("ae", _image_request(datatype="FP64"), {}, "expected datatype FP32"),
        ("ae", _image_request(shape=[1, 1, 28, 27]), {}, "expected shape"),
        ("ae", _image_request(data=[0.5] * 783), {}, "holds 784 values but data has 783"),
        ("ae", _image_request(data=[True] * 784), {}, "expected FP32 values"),
        ("ae", _image_request(data=[2.0] * 784), {}, "intensities in [0, 1]"),
        ("ae", _image_request() | {"parameters": {"layer": 1}}, {}, "unknown parameters"),
        ("cnn", _image_request() | {"parameters": {"layer": 7}}, {}, "parameter layer"),
        ("cnn", _image_request() | {"parameters": {"layer": 6, "k": 393}}, {}, "too large"),
        ("cnn", _image_request() | {"parameters": {"layer": 6, "channel": 8}}, {}, "channel 8"),
        ("vae", {"inputs": [], "parameters": {"label": 10}}, {}, "has no labels"),
        ("vae", {"inputs": [], "parameters": {"n": 0}}, {}, "parameter n"),
        ("ae", {"outputs": [{"name": "mean"}], **_image_request()}, {}, "unknown outputs"),
        ("ae", b"{", {}, "not a JSON document"),
        ("ae", {"inputs": []}, {}, "input 'image' is required"),
    ],
)
async def test_bad_requests_get_the_protocols_400(make_client, model, body, headers, message):
    client, _ = await make_client()
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = await client.post(f"/v2/models/{model}/infer", content=content, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "bad_inference_request"
    assert message in r.json()["error"]


@pytest.mark.parametrize(
    "declared, extra, message",
    [
        (3135, b"", "binary_data_size is 3135"),  # a size that is not the shape's
        (3136, b"\0" * 4, "binary part has 3140 bytes"),  # more bytes than the inputs take
        (3136, b"", "bytes of binary data are left"),  # fewer bytes than declared
    ],
)
async def test_a_binary_header_that_lies_is_a_400(make_client, declared, extra, message):
    client, _ = await make_client()
    x = np.zeros((1, 1, 28, 28), np.float32)
    document = {
        "inputs": [
            {
                "name": "image",
                "shape": [1, 1, 28, 28],
                "datatype": "FP32",
                "parameters": {"binary_data_size": declared},
            }
        ]
    }
    body, headers = _binary_body(document, [x])
    body = body[:-4] if message.endswith("left") else body + extra
    r = await client.post("/v2/models/ae/infer", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    too_long = {"Inference-Header-Content-Length": str(len(body) + 1)}
    r = await client.post("/v2/models/ae/infer", content=body, headers=too_long)
    assert r.status_code == 400 and "Inference-Header-Content-Length" in r.json()["error"]


async def test_unknown_model_is_a_404_and_the_key_is_needed(make_client):
    client, _ = await make_client(api_key="k")
    r = await client.post("/v2/models/gan/infer", json=_image_request(), headers={"X-API-Key": "k"})
    assert r.status_code == 404 and r.json()["code"] == "unknown_model"
    r = await client.post("/v2/models/ae/infer", json=_image_request())
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert (await client.get("/v2")).status_code == 200
    ok = await client.post("/v2/models/ae/infer", json=_image_request(), headers={"X-API-Key": "k"})
    assert ok.status_code == 200
