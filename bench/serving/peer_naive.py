"""The naive peer: what a first FastAPI version of the service would be. One sync route per
endpoint does one forward pass per request on one torch thread (FastAPI runs sync routes in its
thread pool); no batching, no codec threads, FastAPI's own form parsing. The image code is the
service's, so that the two differ only in how they serve.

Run as a script: ``python -m bench.serving.peer_naive PORT CHECKPOINT_DIR`` (with ``TORCH_HOME``
where
``bench.serving.server.prepare_models`` put AlexNet's weights).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")  # every thread of the pool: one torch thread

import torch
import uvicorn
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import Response
from torchvision import models

from service.api.schemas import GenerateRequest
from service.engine.imaging import ImageSpec, decode_input, encode_png, grid, projection_to_image
from service.engine.latents import latent_codes
from service.models import (
    IMAGENET_NORMALISATION,
    TORCHVISION_NETWORKS,
    UndoableSequential,
    load_checkpoint,
)

MAX_PIXELS = 25_000_000


def create_app(checkpoint_dir: str) -> FastAPI:
    torch.set_num_threads(1)
    ae = load_checkpoint(f"{checkpoint_dir}/ae", torch.device("cpu"))
    ae_spec = ImageSpec(1, 28, ae.normalisation)
    cnn = load_checkpoint(f"{checkpoint_dir}/cnn", torch.device("cpu"))
    vae = load_checkpoint(f"{checkpoint_dir}/vae", torch.device("cpu"))
    prior = getattr(vae.model, "prior", None)
    labels = list(vae.config.labels) if prior is not None else None
    # the memory layout the service uses, so that the comparison is of serving alone
    for checkpoint in (ae, cnn, vae):
        checkpoint.model.to(memory_format=torch.channels_last)
    networks = {
        "cnn": (UndoableSequential(cnn.model.features).eval(), ImageSpec(1, 28, cnn.normalisation))
    }
    alexnet = models.alexnet()
    weights = TORCHVISION_NETWORKS["alexnet"].weights_path
    alexnet.load_state_dict(torch.load(weights, weights_only=True))  # contiguous, as the service
    imagenet = ImageSpec(3, 224, IMAGENET_NORMALISATION, resize=256)
    networks["alexnet"] = (UndoableSequential(alexnet.features).eval(), imagenet)
    app = FastAPI()

    @app.post("/reconstruct")
    def reconstruct(file: UploadFile = File(...), model: str = Form("ae")) -> Response:
        x = decode_input(file.file.read(), file.content_type, ae_spec, MAX_PIXELS)
        with torch.inference_mode():
            y = ae.model.reconstruct(x)
        return Response(encode_png(grid(y)), media_type="image/png")

    @app.post("/visualise")
    def visualise(
        file: UploadFile = File(...), layer: int = Form(...), network: str = Form("alexnet")
    ) -> Response:
        deconv, spec = networks[network]
        x = decode_input(file.file.read(), file.content_type, spec, MAX_PIXELS)
        with torch.inference_mode():
            vis = deconv.visualise(x, layer, 9)
        return Response(encode_png(projection_to_image(vis.projection[0])), media_type="image/png")

    @app.post("/generate")
    def generate(body: GenerateRequest) -> Response:
        z, seed = latent_codes(body, vae.config.latent_features, prior, labels)
        with torch.inference_mode():
            images = vae.model.decode(z, pixel_temperature=vae.model.pixel_temperature)
        headers = {"X-Seed": str(seed)}
        return Response(encode_png(grid(images)), media_type="image/png", headers=headers)

    @app.get("/readyz")
    def ready() -> dict:
        return {"status": "ready"}

    return app


if __name__ == "__main__":
    port, checkpoint_dir = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(create_app(checkpoint_dir), port=port, log_level="warning")
