"""Service settings: one typed object, read from ``UNCONV_*`` environment variables.

Every value is checked when the settings are read, at start; ``load_settings`` turns a bad one
into one line that names the variable, the value and what is allowed, and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .runtime import available_cores

ENV_PREFIX = "UNCONV_"
CONFIG_ERROR_STATUS = 2  # as argparse exits for a bad command line


class Settings(BaseSettings):
    """Every knob of the service. Each field is the environment variable ``UNCONV_<NAME>``;
    its description is docs/settings.md's table, word for word (tests/test_readme.py)."""

    # an empty variable (`UNCONV_X=` in a compose or .env file) means the default
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    checkpoint_dir: Path = Field(
        Path("checkpoints"),
        description="Directory of `<name>.json` + `<name>.safetensors` checkpoints; every one is "
        "served under its name",
    )
    networks: Annotated[list[str], NoDecode] = Field(
        ["alexnet", "vgg16"],
        description="torchvision networks served by `/visualise` (`vgg11` also works; `none` for "
        "none)",
    )
    allow_download: bool = Field(
        False, description="Download missing torchvision weights into `$TORCH_HOME` at start-up"
    )
    device: str = Field(
        "auto",
        description="`auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`; a device this machine "
        "lacks stops the start",
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="Server processes that `python -m service` starts on one port, each with its "
        "own models and batchers, the cores divided among them (unset: one per core on the CPU; "
        "on a GPU four, or fewer cores, which share it, each with its own copy of the models)",
    )
    host: str = Field(
        "127.0.0.1", description="Address `python -m service` binds to (`0.0.0.0` in the image)"
    )
    port: int = Field(8000, ge=1, le=65535, description="Port `python -m service` listens on")
    max_batch_size: int = Field(64, ge=1, description="Most items (images) in one forward pass")
    max_delay_ms: float = Field(
        0.0,
        ge=0,
        description="How long a batch that is not full waits for more requests; 0 never waits "
        "(requests that arrive during a forward pass form the next batch)",
    )
    concurrent_batches: int = Field(
        2,
        ge=1,
        description="Batches that run at once, an inference thread each: while one runs its "
        "forward pass, another decodes or encodes its images; they share the CPU threads. When "
        "unset, `python -m service` runs at most one per core of a worker (one per worker on the "
        "CPU)",
    )
    max_queue: int = Field(
        1024, ge=1, description="Most items waiting per model; beyond it 503 with `Retry-After`"
    )
    request_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Deadline for a request's wait and forward pass; then 504 and it is dropped",
    )
    max_upload_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest request body; then 413"
    )
    max_image_pixels: int = Field(
        25_000_000,
        ge=1,
        description="Largest image (width x height), checked before decoding; then 413",
    )
    max_files: int = Field(256, ge=1, description="Most images in one `/reconstruct` request")
    api_key: SecretStr | None = Field(
        None,
        description="When set, `POST /visualise`, `POST /attribute`, `POST /reconstruct`, "
        "`POST /generate`, `GET /models`, `GET /atlas`, `GET /atlas/{network}/{layer}/{channel}` "
        "and the v2 model and repository routes (`GET "
        "/v2/models/{name}`, `GET /v2/models/{name}/ready` and `POST /v2/models/{name}/infer`, "
        "each also under `/versions/{version}`; `POST /v2/repository/index`, `POST "
        "/v2/repository/models/{name}/load` and `POST /v2/repository/models/{name}/unload`) need "
        "the header `X-API-Key` (else 401); `/healthz`, `/readyz`, `/v2`, `/v2/health/*`, "
        "`/metrics`, `/docs`, `/openapi.json` and the web page do not",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        [], description="Origins allowed by CORS, comma-separated (`*` for any)"
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for forward passes (unset: the worker's share of the cores); a "
        "batch that starts while others run gets its share, a batch of one image one thread",
    )
    codec_threads: int | None = Field(
        None,
        ge=1,
        description="Threads that decode uploads and encode answers of a batch at once (unset: the "
        "worker's share of the cores, at most 4)",
    )
    model_control: Literal["none", "explicit"] = Field(
        "none",
        description="`explicit` turns on `POST /v2/repository/models/{name}/load` and `/unload` "
        "(Triton's model-repository extension; with `UNCONV_API_KEY` set they need the key; with "
        "several worker processes each swaps before its next request); `none` refuses them with "
        "403. `POST /v2/repository/index` answers either way",
    )
    watch_checkpoints: bool = Field(
        False,
        description="`1` reloads a checkpoint whose files changed (retrained, fixed or new) "
        "within about two seconds, with no restart and no load call, and finds the feature "
        "atlases again when theirs did; each worker process watches for itself, and a model "
        "unloaded on request stays unloaded",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="`critical`, `error`, `warning`, `info` or `debug`"
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text`, lines for a terminal, or `json`, one JSON object a line for a log "
        "collector; either way each line about a request carries its request ID "
        "(docs/operating.md)",
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value):
        # compose passes an unset variable as an empty string: that means "no key"
        return None if value in ("", None) else value

    @field_validator("networks", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        if isinstance(value, str):
            # an empty variable is the default; `none` is the empty list
            parts = [part.strip() for part in value.split(",") if part.strip()]
            return [] if parts == ["none"] else parts
        return value

    @field_validator("device")
    @classmethod
    def _usable_device(cls, value: str) -> str:
        # only here: ``python -m service`` reads the settings, then sets OpenMP variables
        # before torch loads
        from .models.device import resolve_device

        value = value.strip().lower()
        resolve_device(value)  # the one validation: raises ValueError saying what is allowed
        return value

    def for_cores(self, cores: int) -> Settings:
        """These settings for a process with ``cores`` cores (``python -m service`` divides the
        machine's among its workers): unless UNCONV_CONCURRENT_BATCHES is set, no more batches
        run at once than the process has cores. A worker on one core then runs one batch at a
        time, larger, for less CPU per request than two smaller ones taking turns on that core
        (docs/performance.md)."""
        if "concurrent_batches" in self.model_fields_set:
            return self
        batches = max(1, min(self.concurrent_batches, cores))
        return self.model_copy(update={"concurrent_batches": batches})

    def worker_processes(self) -> int:
        """How many server processes ``python -m service`` starts."""
        if self.workers is not None:
            return self.workers
        return min(GPU_WORKERS, available_cores()) if _on_gpu(self.device) else available_cores()


# One process leaves a GPU mostly idle: its HTTP, codec and batching work take turns at one
# GIL. Four share it, each with its own CUDA context and models (the measurements: the H200
# entry of docs/performance.md's log).
GPU_WORKERS = 4


def _on_gpu(device: str) -> bool:
    from .models.device import resolve_device

    return resolve_device(device).type == "cuda"


def describe_settings_error(err: ValidationError) -> list[str]:
    """One line per bad variable: its name, the value given and what is allowed."""
    lines = []
    for error in err.errors():
        name = ENV_PREFIX + "_".join(str(part) for part in error["loc"][:1]).upper()
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{name}={error['input']!r} is invalid: {message}")
    return lines


def load_settings() -> Settings:
    """The settings from the environment; a bad value exits with status 2 and one line."""
    try:
        return Settings()
    except ValidationError as err:
        for line in describe_settings_error(err):
            print(f"unconv: configuration error: {line}", file=sys.stderr)
        raise SystemExit(CONFIG_ERROR_STATUS) from None
