"""The smallest scaling spec a whole run can take (a second or two): the command-line, safety and fault tests' input."""

TEMPLATE = """name = "{name}"
kind = "scaling"
question = "A tiny scaling sweep for the tests."
seed = 5

[parameters]
m = [8, 16, 32]
n_seeds = 2
n_sequences = 2
logit_scales = ["typical"]
n_tokens = {n_tokens}
d_head = 4
feature_maps = ["positive"]
circuits = ["astrocyte", "uniform"]
n_resamples = 100
"""


def tiny_spec(name: str = "tiny", n_tokens: int = 8) -> str:
    """The spec's text, named ``name``, with ``n_tokens`` tokens per sequence."""
    return TEMPLATE.format(name=name, n_tokens=n_tokens)
