"""Save a tiny random GPT-2 and a tiny random BERT, as any transformers model is saved, to audit them.

    python examples/own_model/make_tiny_models.py /tmp/my_models

writes /tmp/my_models/tiny_gpt2 and /tmp/my_models/tiny_bert (config.json and model.safetensors; no tokenizer:
the audit then feeds them the bytes of real English text as token ids). Nothing is downloaded. Any folder that
``save_pretrained`` wrote (a model of your own, a fine-tuned one) is audited the same way: see README.md here.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import transformers

VOCABULARY = 512  # above 256: every byte of the text is its own token id


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where the two model folders are written")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    models = {
        "tiny_gpt2": transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=2, n_head=2, n_embd=64, vocab_size=VOCABULARY, n_positions=256, bos_token_id=0, eos_token_id=0)),
        "tiny_bert": transformers.BertModel(transformers.BertConfig(
            num_hidden_layers=2, num_attention_heads=2, hidden_size=64, intermediate_size=128,
            vocab_size=VOCABULARY, max_position_embeddings=256)),
    }
    for name, model in models.items():
        model.eval().save_pretrained(args.folder / name)
        print(args.folder / name)


if __name__ == "__main__":
    main()
