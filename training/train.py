"""Train one model from its recipe and write a checkpoint the service can serve."""

from __future__ import annotations

import dataclasses
import math
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from service.models import (
    MNIST_NORMALISATION,
    RegularisedLoss,
    load_checkpoint,
    save_checkpoint,
    target_transform,
)
from service.runtime import keep_freed_memory

from .data import AutoMNIST, ImageSplits, load_images, random_shift, to_pixels
from .loop import evaluate, make_criterion, train_one_epoch
from .prior import fit_prior
from .recipes import RECIPES, Recipe
from .report import plot_losses, save_reconstructions, save_samples, summary_table
from .state import load_state, save_state
from .world import World

OPTIMISERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax,
    "sgd": torch.optim.SGD,
}
SCHEDULES = ("onecycle", "constant")


@dataclass
class TrainOptions:
    """Everything a training run can be told; ``None`` takes the recipe's default."""

    model: str
    out: Path
    name: str | None = None
    data: str = "mnist-5k"
    data_root: Path = Path("~/.pytorch")
    download: bool = True
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimiser: str | None = None
    schedule: str | None = None
    weight_decay: float | None = None
    assumption: str | None = None
    beta: float | None = None
    augment_shift: int | None = None
    kl_warmup: int = 0
    device: str = "auto"
    seed: int = 1806
    resume: bool = False
    max_batches: int | None = None
    progress: bool = True
    artefacts: bool = True

    def recipe(self) -> Recipe:
        """The model's recipe with every option that was given applied to it."""
        recipe = RECIPES[self.model]
        fields = {f.name for f in dataclasses.fields(Recipe)}
        given = {k: v for k, v in dataclasses.asdict(self).items() if k in fields and v is not None}
        if recipe.kind == "classifier":
            given.pop("assumption", None)
        return dataclasses.replace(recipe, **given)


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict]


def _datasets(recipe: Recipe, splits: ImageSplits):
    normalise = MNIST_NORMALISATION.normalise
    if recipe.kind == "classifier":
        train = torch.utils.data.TensorDataset(
            normalise(to_pixels(splits.train_images)), splits.train_labels
        )
        test = torch.utils.data.TensorDataset(
            normalise(to_pixels(splits.test_images)), splits.test_labels
        )
        return train, test
    targets = target_transform(recipe.assumption, MNIST_NORMALISATION)
    return (
        AutoMNIST(splits.train_images, normalise, targets),
        AutoMNIST(splits.test_images, normalise, targets),
    )


class _Indexed(torch.utils.data.Dataset):
    """Fetch a whole batch with one tensor index instead of item by item."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, indices):
        if isinstance(self.dataset, torch.utils.data.TensorDataset):
            return tuple(t[indices] for t in self.dataset.tensors)
        return self.dataset[indices]


def _loader(dataset, batch_size: int, generator=None, sampler=None) -> DataLoader:
    sampler = sampler or (
        RandomSampler(dataset, generator=generator) if generator else range(len(dataset))
    )
    batches = BatchSampler(sampler, batch_size, drop_last=False)
    return DataLoader(_Indexed(dataset), sampler=batches, batch_size=None)


class _Shifted:
    """Batches of (images, labels) with every image randomly translated."""

    def __init__(self, batches, max_shift: int, generator: torch.Generator):
        self.batches, self.max_shift, self.generator = batches, max_shift, generator

    def __iter__(self):
        for x, y in self.batches:
            yield random_shift(x, self.max_shift, self.generator), y


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _metadata(options, recipe, splits, history, device, world_size) -> dict:
    return {
        "description": recipe.description,
        "data": splits.name,
        "split": splits.split,
        "train_images": len(splits.train_images),
        "test_images": len(splits.test_images),
        "epochs": history[-1]["epoch"] if history else 0,
        "seed": options.seed,
        "batch_size": recipe.batch_size,
        "optimiser": {
            "name": recipe.optimiser,
            "lr": recipe.lr,
            "schedule": recipe.schedule,
            "weight_decay": recipe.weight_decay,
        },
        "beta": recipe.beta if recipe.kind == "vae" else None,
        "augment_shift": recipe.augment_shift,
        "kl_warmup": options.kl_warmup if recipe.kind == "vae" else None,
        "metrics": {k[5:]: v for k, v in history[-1].items() if k.startswith("test_")}
        if history
        else {},
        "history": history,
        "device": str(device),
        "world_size": world_size,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "git_commit": _git_commit(),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _make_optimiser(recipe: Recipe, model):
    if recipe.optimiser not in OPTIMISERS:
        raise ValueError(
            f"expected optimiser in {sorted(OPTIMISERS)} but received {recipe.optimiser!r}"
        )
    return OPTIMISERS[recipe.optimiser](
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )


def _make_scheduler(recipe: Recipe, optimiser, total_steps: int, done_steps: int):
    if recipe.schedule == "constant":
        return None
    if recipe.schedule != "onecycle":
        raise ValueError(f"expected schedule in {SCHEDULES} but received {recipe.schedule!r}")
    # a resumed run re-enters the one-cycle schedule where it left off
    return torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=recipe.lr,
        total_steps=max(total_steps, done_steps + 1),
        last_epoch=done_steps - 1,
    )


@dataclass
class _Run:
    """Everything one training run works with, set up by ``_set_up``."""

    options: TrainOptions
    recipe: Recipe
    world: World
    path: Path
    splits: ImageSplits
    train_set: torch.utils.data.Dataset
    model: torch.nn.Module  # the model that is evaluated and saved
    train_model: torch.nn.Module  # the same, wrapped in DistributedDataParallel when parallel
    criterion: torch.nn.Module
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    shuffle: torch.Generator
    sampler: DistributedSampler | None
    batches: object
    test_batches: DataLoader
    steps_per_epoch: int
    history: list[dict]


def train(options: TrainOptions) -> TrainResult:
    """
    Train ``options.model`` and write ``<out>/<name>.{json,safetensors}`` after every epoch.

    Under ``torchrun`` every process trains on its shard of each global batch of
    ``--batch-size`` images (DistributedDataParallel, NCCL on GPUs, gloo on CPUs) and rank 0
    evaluates and writes the checkpoint.
    """
    keep_freed_memory()  # large activations page-faulted in afresh every step: docs/training.md
    world = World.join(options.device)
    run = _set_up(options, world)
    first = len(run.history) + 1  # after the epochs a resumed run has done
    for epoch in range(first, run.recipe.epochs + 1):
        losses, seconds = _train_epoch(run, epoch)
        if world.rank == 0:
            _evaluate_and_save(run, epoch, losses, seconds)
            if options.progress:
                tqdm.write(summary_table(run.history[-1:], header=epoch == first))
        world.barrier()
    if world.rank == 0 and run.history:
        _report(run)
    world.leave()
    return TrainResult(run.path.with_name(run.path.name + ".json"), run.history)


def _set_up(options: TrainOptions, world: World) -> _Run:
    """Data, model, loss and optimiser, resumed from the saved state when asked."""
    recipe = options.recipe()
    if recipe.batch_size % world.size:
        raise ValueError(
            f"--batch-size {recipe.batch_size} must divide over {world.size} processes"
        )
    path = Path(options.out).expanduser() / (options.name or options.model)
    torch.manual_seed(options.seed)
    splits = load_images(options.data, options.data_root, options.download)
    train_set, test_set = _datasets(recipe, splits)
    # channels-last convolutions train faster on the CPU (docs/training.md); the
    # checkpoint is written contiguous, so the format is the trainer's business only
    model = recipe.config.build(recipe.assumption).to(
        world.device, memory_format=torch.channels_last
    )
    shuffle = torch.Generator().manual_seed(options.seed)
    steps_per_epoch = math.ceil(len(train_set) / recipe.batch_size)
    if options.max_batches:
        steps_per_epoch = min(steps_per_epoch, options.max_batches)
    optimiser = _make_optimiser(recipe, model)
    history = _resume(path, model, optimiser, shuffle, world.device) if options.resume else []
    scheduler = _make_scheduler(
        recipe, optimiser, steps_per_epoch * recipe.epochs, steps_per_epoch * len(history)
    )
    train_model, sampler = _parallel(model, train_set, world, options.seed)
    # each process takes its share of every global batch
    batches = _loader(train_set, recipe.batch_size // world.size, shuffle, sampler)
    if recipe.augment_shift:
        batches = _Shifted(batches, recipe.augment_shift, shuffle)
    return _Run(
        options=options,
        recipe=recipe,
        world=world,
        path=path,
        splits=splits,
        train_set=train_set,
        model=model,
        train_model=train_model,
        criterion=make_criterion(recipe.kind, recipe.assumption, recipe.beta),
        optimiser=optimiser,
        scheduler=scheduler,
        shuffle=shuffle,
        sampler=sampler,
        batches=batches,
        test_batches=_loader(test_set, 100),  # under the 32 MiB mmap threshold: faster
        steps_per_epoch=steps_per_epoch,
        history=history,
    )


def _parallel(model, train_set, world: World, seed: int):
    """The model to train and the sampler of this process's shard of the data: with several
    processes, DistributedDataParallel averages the gradients of their shards every step."""
    if world.size == 1:
        return model, None
    sampler = DistributedSampler(train_set, world.size, world.rank, shuffle=True, seed=seed)
    ids = [world.device.index] if world.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids), sampler


def _resume(path: Path, model, optimiser, shuffle: torch.Generator, device) -> list[dict]:
    """Load the weights, optimiser and RNG states saved after the last epoch; its history."""
    model.load_state_dict(load_checkpoint(path, device).model.state_dict())
    state = load_state(path)
    optimiser.load_state_dict(state["optimiser"])
    shuffle.set_state(state["shuffle_rng"])
    torch.set_rng_state(state["torch_rng"])
    return state["history"]


def kl_weight(beta: float, warmup_epochs: int, epoch: int) -> float:
    """The VAE's KL weight in ``epoch`` (1-based): rising linearly to ``beta`` over the warm-up."""
    return beta * min(1.0, epoch / warmup_epochs) if warmup_epochs else beta


def _train_epoch(run: _Run, epoch: int) -> tuple[dict[str, float], tuple[float, float]]:
    """One epoch over this process's batches; its mean losses and how long it took: wall and
    CPU seconds (this process's threads together: on a shared machine, the cost that the wall
    time hides)."""
    if isinstance(run.criterion, RegularisedLoss):
        run.criterion.weight = kl_weight(run.recipe.beta, run.options.kl_warmup, epoch)
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    bar = tqdm(
        run.batches,
        desc=f"{run.path.name} epoch {epoch}/{run.recipe.epochs}",
        unit="batch",
        total=run.steps_per_epoch,
        leave=False,
        disable=not run.options.progress or run.world.rank != 0,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    losses = train_one_epoch(
        run.train_model,
        bar,
        run.optimiser,
        run.criterion,
        run.world.device,
        run.scheduler,
        run.options.max_batches,
    )
    return losses, (time.perf_counter() - started, time.process_time() - cpu_started)


def _evaluate_and_save(run: _Run, epoch: int, losses: dict, seconds: tuple[float, float]) -> None:
    """Evaluate on the held-out split, add the epoch to the history, write checkpoint and state."""
    recipe, options = run.recipe, run.options
    prior_fitted = recipe.kind == "vae" and epoch == recipe.epochs
    if prior_fitted:  # once, at the end: the fit costs seconds; earlier checkpoints keep N(0, I)
        fit_prior(run.model, run.train_set.inputs, run.splits.train_labels, run.world.device)
    metrics = evaluate(
        run.model,
        recipe.kind,
        run.test_batches,
        run.world.device,
        recipe.assumption,
        MNIST_NORMALISATION,
        seed=options.seed,
        prior_fitted=prior_fitted,
    )
    run.history.append(
        {"epoch": epoch, "seconds": round(seconds[0], 3), "cpu_seconds": round(seconds[1], 3)}
        | {f"train_{k}": v for k, v in losses.items()}
        | {f"test_{k}": v for k, v in metrics.items()}
    )
    metadata = _metadata(options, recipe, run.splits, run.history, run.world.device, run.world.size)
    save_checkpoint(
        run.path, run.model, recipe.config, MNIST_NORMALISATION, recipe.assumption, metadata
    )
    save_state(
        run.path,
        {
            "optimiser": run.optimiser.state_dict(),
            "history": run.history,
            "shuffle_rng": run.shuffle.get_state(),
            "torch_rng": torch.get_rng_state(),
        },
    )


def _report(run: _Run) -> None:
    """Rank 0, after the last epoch: the PNG artefacts and the summary table."""
    if run.options.artefacts:
        _write_artefacts(run.path, run.splits, run.recipe, run.history)
    if run.options.progress:
        tqdm.write(f"\n{run.path.name}: summary\n{summary_table(run.history)}")


def _write_artefacts(path: Path, splits: ImageSplits, recipe: Recipe, history: list[dict]) -> None:
    """Loss curves, and for auto-encoders reconstructions and (VAEs) prior samples, as PNGs."""
    plot_losses(history, path.with_name(path.name + ".losses.png"))
    if recipe.kind == "classifier":
        return
    checkpoint = load_checkpoint(path)
    picks = torch.linspace(0, len(splits.test_images) - 1, 16).long()
    inputs = MNIST_NORMALISATION.normalise(to_pixels(splits.test_images[picks]))
    save_reconstructions(checkpoint, inputs, path.with_name(path.name + ".reconstructions.png"))
    if recipe.kind == "vae":
        save_samples(checkpoint, path.with_name(path.name + ".samples.png"))
