"""Real inputs from installed packages: text, windows, images and their held-out split."""
import json

import pytest
import torch

from astrostats.targets import corpora
from astrostats.targets.vision import manifest_path
from astrostats.validation import InputError


def test_pydoc_text_is_long_real_english_and_deterministic():
    text = corpora.english_text("pydoc")
    assert text == corpora.english_text("pydoc")
    words = text.split()
    assert len(words) > 50_000
    assert {"the", "and", "of"} <= set(words)


def test_token_windows_are_consecutive_and_equal_length():
    ids = list(range(100))
    windows = corpora.token_windows(ids, 7, 3)
    assert windows.shape == (3, 7)
    assert windows.flatten().tolist() == ids[:21]


def test_text_too_short_names_the_request():
    with pytest.raises(InputError, match="n_sequences x n_tokens"):
        corpora.token_windows(list(range(10)), 6, 2)


def test_missing_package_names_package_and_install_command():
    with pytest.raises(InputError, match="no_such_package_xyz.*pip install no-such"):
        corpora.require_package("no_such_package_xyz", "pip install no-such")


def test_unknown_sources_are_input_errors():
    with pytest.raises(InputError, match="text_source"):
        corpora.english_text("klingon")
    with pytest.raises(InputError, match="image_source"):
        corpora.image_set("cifar")


def test_fashion_mnist_absent_names_the_debian_package(tmp_path):
    with pytest.raises(InputError, match="dataset-fashion-mnist"):
        corpora.image_set("fashion_mnist", tmp_path)


def test_mnist_split_is_disjoint_balanced_and_matches_the_trained_weights():
    data = corpora.image_set("mnist")
    train, test = set(data.train_index.tolist()), set(data.test_index.tolist())
    assert not train & test and len(train) + len(test) == len(data.labels) == 5000
    assert torch.bincount(data.labels[data.test_index]).tolist() == [100] * 10
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    # the committed ViT was trained on exactly these bytes
    assert json.loads(manifest_path("mnist").read_text())["data_sha256"] == data.sha256
