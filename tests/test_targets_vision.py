"""The ViT trained here: its extracted heads reproduce its own attention, and its weights are what the
manifest says."""
import json

import pytest
import torch

from astrostats.circuits.attention import softmax_attention
from astrostats.targets import vision
from astrostats.targets.swap import CircuitSetting, circuit_heads
from astrostats.targets.train_vit import accuracy, main, train

pytestmark = pytest.mark.slow  # the real ViT


@pytest.fixture(scope="module")
def model():
    return vision.load_vit("mnist")


@pytest.fixture(scope="module")
def test_split():
    return vision.test_images("mnist")


def test_committed_weights_are_small_and_match_the_manifest(model, test_split):
    manifest = json.loads(vision.manifest_path("mnist").read_text())
    assert vision.weights_path("mnist").stat().st_size < 2**20
    assert sum(p.numel() for p in model.parameters()) == manifest["n_parameters"]
    images, labels = test_split
    assert len(labels) == manifest["n_test"]
    assert accuracy(model, images, labels) == manifest["test_accuracy"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_extracted_heads_reproduce_the_models_attention(model, test_split, dtype, rounding_bound):
    """Softmax attention from the extracted (scaled) q, k, v equals the model's own attention output,
    captured independently at the input of its output projection."""
    images = test_split[0][:16].to(dtype)
    try:
        layers = vision.vit_attention(model.to(dtype), images)
    finally:
        model.float()  # the module-scoped model stays float32 for the other tests, whatever happens here
    for layer in layers:
        recomputed = softmax_attention(layer.q, layer.k, layer.v)
        assert layer.q.shape == (16, 4, 50, 16)
        assert (recomputed - layer.output).abs().max() <= rounding_bound(layer.q, layer.k, layer.v)


def test_heads_are_target_batches_with_labels_and_another_head(model):
    batches = vision.vit_heads(n_sequences=3, layers=[0, -1], heads=[1], model=model)
    assert [(b.labels["layer"], b.labels["head"]) for b in batches] == [(0, 1), (3, 1)]
    batch = batches[0]
    assert batch.labels["target"] == "vit_mnist" and batch.labels["logit_scale"] == "model"
    assert batch.labels["n_tokens"] == 50 and batch.labels["d_head"] == 16 and not batch.causal
    assert not torch.equal(batch.alternative_qk[0], batch.q)


def test_circuit_attention_hook_is_seeded_per_head(model, test_split):
    images = test_split[0][:8]
    setting = CircuitSetting(m=256, seed=3)
    run = lambda s: model(images, attention=lambda layer, q, k, v: circuit_heads(layer, q, k, v, s))
    with torch.no_grad():
        first, again = run(setting), run(setting)
        other = run(CircuitSetting(m=256, seed=4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_training_command_writes_weights_and_manifest(tmp_path):
    assert main(["--epochs", "1", "--train-limit", "256", "--out", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "vit_mnist.json").read_text())
    committed = json.loads(vision.manifest_path("mnist").read_text())
    assert manifest["command"] == "python -m astrostats.targets.train_vit --epochs 1 --train-limit 256 --out " + str(tmp_path)
    assert manifest["n_train"] == 256 and manifest["n_test"] == 1000
    assert manifest["data_sha256"] == committed["data_sha256"]
    reloaded = vision.ViT(vision.ViTConfig(**manifest["config"]))
    from safetensors.torch import load_file
    reloaded.load_state_dict(load_file(str(tmp_path / "vit_mnist.safetensors")))


def test_training_leaves_the_callers_random_state_alone():
    """The seed reaches only a forked copy of the global generator: the caller's state is as it was, and the
    weights do not depend on it."""
    torch.manual_seed(1)
    before = torch.get_rng_state()
    first, _ = train(epochs=1, train_limit=64, seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(2)
    second, _ = train(epochs=1, train_limit=64, seed=0)
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name])


def test_configuration_is_read_without_the_weights(model):
    assert vision.vit_config("mnist") == model.config
