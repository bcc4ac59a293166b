"""Response bodies of the feature-atlas routes (``GET /atlas``, ``GET /atlas/{network}/...``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AtlasDataset(BaseModel):
    """The data set an atlas was built over."""

    name: str = Field(description="mnist-5k, or the folder's name")
    split: str | None = Field(None, description="mnist-5k's split: heldout or train")
    count: int = Field(description="Items scanned")


class AtlasLayer(BaseModel):
    layer: int = Field(description="1-based, as /visualise numbers layers")
    name: str
    feature_maps: int
    shape: list[int] = Field(description="The layer's output (C, h, w)")


class AtlasInfo(BaseModel):
    """One atlas found beside the checkpoints; only a served one answers its maps."""

    network: str
    served: bool
    reason: str | None = Field(None, description="Why it is not served (stale, broken...)")
    dataset: AtlasDataset | None = None
    weights_sha256: str | None = Field(None, description="The weights it was built for")
    top: int | None = Field(None, description="Entries a feature map")
    layers: list[AtlasLayer] = Field(default_factory=list)
    created: str | None = None


class AtlasListResponse(BaseModel):
    atlases: list[AtlasInfo]


class AtlasEntryInfo(BaseModel):
    """One of the feature map's strongest activations across the data set."""

    index: int = Field(description="The item's index in the data set")
    name: str | None = Field(None, description="The item's path in an image folder")
    y: int
    x: int
    value: float
    box: list[int] = Field(description="Receptive field: top, left, bottom, right (exclusive)")
    projection_png: str = Field(description="Base64 PNG: the projection inside the box")
    patch_png: str = Field(description="Base64 PNG: the input inside the box")
    image_png: str = Field(description="Base64 PNG: the whole item as the network saw it")


class AtlasMapResponse(BaseModel):
    network: str
    layer: int
    layer_name: str
    channel: int
    dataset: AtlasDataset
    weights_sha256: str
    entries: list[AtlasEntryInfo] = Field(description="Strongest first")
