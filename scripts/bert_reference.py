#!/usr/bin/env python3
"""Reference forward passes of BERT checkpoints, for the Rust loader's correctness tests.

Independent of the Rust code and of any BERT library: the safetensors file is read with
json + struct, the tokenizer is BERT's uncased basic tokenizer + WordPiece over the
vocabulary in tokenizer.json, and the forward pass (post-norm BERT: embeddings + LayerNorm,
self-attention, exact erf GELU, pooler dense + tanh on [CLS]) is numpy in float64.

    python3 scripts/bert_reference.py [--source ../shared/data] [--out tests/fixtures]

writes
  tests/fixtures/data/bert-tiny-random/{config.json,model.safetensors}
      a tiny random BertForSequenceClassification checkpoint (names with the `bert.` prefix, a
      `classifier` head and the `position_ids` buffer, layer-norm epsilon 1e-5), seeded, so the
      loader is tested on every clone;
  tests/fixtures/bert_tiny_reference.json
      its reference output on two rows (one single sentence with padding, one pair);
  tests/fixtures/bert_reference.json
      when <source>/all-MiniLM-L6-v2 exists: token ids, attention mask and token types of four
      fixed sentences (one a pair), a slice of the last hidden states (every 24th feature of
      every position) and the whole pooled output.

With torch installed it also recomputes the MiniLM pass with torch's own layer_norm, GELU and
softmax in float32 and prints the largest difference (a check of this script, not stored).
"""

import argparse
import json
import math
import struct
import unicodedata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4"}

SENTENCES = [
    ("Hello, world!", None),
    ("Majority kernels train k copies of every dense layer.", None),
    ("The deployed model collapses them to their mean.", None),
    (
        "The company said its profits rose sharply in the third quarter.",
        "Profits increased a lot, the firm reported.",
    ),
]
HIDDEN_STRIDE = 24  # every 24th feature of the last hidden states is stored


def read_safetensors(path: Path) -> dict:
    """name -> numpy array (float tensors as float64), parsed from the header by hand."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[base + begin : base + end], dtype=DTYPES[info["dtype"]])
        array = array.reshape(info["shape"])
        tensors[name] = array.astype(np.float64) if array.dtype.kind == "f" else array
    return tensors


def write_safetensors(path: Path, tensors: dict) -> None:
    """The safetensors format: u64 header length, JSON header (padded to 8 bytes), data."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        array = tensors[name]
        dtype = {np.dtype("<f4"): "F32", np.dtype("<i8"): "I64"}[array.dtype]
        blob = array.tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def bert_forward(w: dict, config: dict, ids, mask, types):
    """Last hidden states [B, T, H] and pooled output [B, H] of a BertModel (weights `w`,
    PyTorch layout: Linear weights are [out, in])."""
    eps, heads = config["layer_norm_eps"], config["num_attention_heads"]
    ids, mask, types = np.array(ids), np.array(mask, dtype=np.float64), np.array(types)
    b, t = ids.shape
    e = "embeddings."
    x = w[e + "word_embeddings.weight"][ids]
    x = x + w[e + "position_embeddings.weight"][np.arange(t)][None]
    x = x + w[e + "token_type_embeddings.weight"][types]
    x = layer_norm(x, w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"], eps)
    d = x.shape[-1]
    dh = d // heads
    bias = (1.0 - mask)[:, None, None, :] * -1e9  # masked keys get no weight

    def dense(name, y):
        return y @ w[name + ".weight"].T + w[name + ".bias"]

    def split(y):
        return y.reshape(b, t, heads, dh).transpose(0, 2, 1, 3)

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (split(dense(p + "attention.self." + n, x)) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
        attended = dense(p + "attention.output.dense", context)
        ln = p + "attention.output.LayerNorm"
        x = layer_norm(attended + x, w[ln + ".weight"], w[ln + ".bias"], eps)
        fed = dense(p + "output.dense", gelu(dense(p + "intermediate.dense", x)))
        ln = p + "output.LayerNorm"
        x = layer_norm(fed + x, w[ln + ".weight"], w[ln + ".bias"], eps)
    pooled = np.tanh(dense("pooler.dense", x[:, 0]))
    return x, pooled


def torch_forward(w: dict, config: dict, ids, mask, types):
    """The same pass with torch's operations in float32 (a check of `bert_forward`)."""
    import torch
    import torch.nn.functional as F

    tw = {n: torch.tensor(a, dtype=torch.float32) for n, a in w.items() if a.dtype.kind == "f"}
    eps, heads = config["layer_norm_eps"], config["num_attention_heads"]
    ids, types = torch.tensor(ids), torch.tensor(types)
    mask = torch.tensor(mask, dtype=torch.bool)
    b, t = ids.shape

    def ln(name, y):
        return F.layer_norm(y, y.shape[-1:], tw[name + ".weight"], tw[name + ".bias"], eps)

    def dense(name, y):
        return F.linear(y, tw[name + ".weight"], tw[name + ".bias"])

    e = "embeddings."
    x = tw[e + "word_embeddings.weight"][ids] + tw[e + "position_embeddings.weight"][:t][None]
    x = ln(e + "LayerNorm", x + tw[e + "token_type_embeddings.weight"][types])
    d = x.shape[-1]
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (
            dense(p + "attention.self." + n, x).view(b, t, heads, d // heads).transpose(1, 2)
            for n in ("query", "key", "value")
        )
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        context = context.transpose(1, 2).reshape(b, t, d)
        x = ln(p + "attention.output.LayerNorm", dense(p + "attention.output.dense", context) + x)
        fed = dense(p + "output.dense", F.gelu(dense(p + "intermediate.dense", x)))
        x = ln(p + "output.LayerNorm", fed + x)
    return x.numpy(), torch.tanh(dense("pooler.dense", x[:, 0])).numpy()


def basic_tokens(text: str) -> list:
    """BERT's uncased basic tokenizer: lower case, accents stripped, split on white space and
    around punctuation."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    tokens = []
    for word in text.split():
        current = ""
        for c in word:
            if unicodedata.category(c).startswith("P") or (c.isascii() and not c.isalnum()):
                if current:
                    tokens.append(current)
                tokens.append(c)
                current = ""
            else:
                current += c
        if current:
            tokens.append(current)
    return tokens


def wordpiece(token: str, vocab: dict) -> list:
    """Greedy longest-match-first WordPiece ([UNK] when a word cannot be split)."""
    pieces, start = [], 0
    while start < len(token):
        end = len(token)
        while end > start:
            piece = token[start:end] if start == 0 else "##" + token[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:
            return [vocab["[UNK]"]]
        pieces.append(vocab[piece])
        start = end
    return pieces


def encode(sentences, vocab: dict):
    """[CLS] a [SEP] (b [SEP]) ids with token types, padded with 0 to the longest row."""
    rows = []
    for first, second in sentences:
        ids = [vocab["[CLS]"]] + [i for w in basic_tokens(first) for i in wordpiece(w, vocab)]
        ids.append(vocab["[SEP]"])
        types = [0] * len(ids)
        if second is not None:
            tail = [i for w in basic_tokens(second) for i in wordpiece(w, vocab)] + [vocab["[SEP]"]]
            ids += tail
            types += [1] * len(tail)
        rows.append((ids, types))
    t = max(len(ids) for ids, _ in rows)
    pad = lambda row: row + [0] * (t - len(row))
    return (
        [pad(ids) for ids, _ in rows],
        [pad([1] * len(ids)) for ids, _ in rows],
        [pad(types) for _, types in rows],
    )


def rounded(array) -> list:
    return np.asarray(array, dtype=np.float64).round(8).tolist()


def tiny_checkpoint(out_dir: Path) -> tuple:
    """A seeded random BertForSequenceClassification checkpoint with 2 layers of width 16."""
    config = {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": 40,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 32,
        "max_position_embeddings": 24,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-5,
        "hidden_act": "gelu",
        "position_embedding_type": "absolute",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": 0,
        "num_labels": 2,
    }
    rng = np.random.default_rng(16)
    d, f = config["hidden_size"], config["intermediate_size"]

    def normal(*shape, std=0.3):
        return (rng.standard_normal(shape) * std).astype("<f4")

    w = {
        "embeddings.word_embeddings.weight": normal(config["vocab_size"], d, std=1.0),
        "embeddings.position_embeddings.weight": normal(
            config["max_position_embeddings"], d, std=0.5
        ),
        "embeddings.token_type_embeddings.weight": normal(2, d, std=0.5),
    }

    def norm(name):
        w[name + ".weight"] = (1.0 + normal(d, std=0.2)).astype("<f4")
        w[name + ".bias"] = normal(d, std=0.1)

    def linear(name, d_in, d_out):
        w[name + ".weight"] = normal(d_out, d_in, std=1.0 / math.sqrt(d_in))
        w[name + ".bias"] = normal(d_out, std=0.1)

    norm("embeddings.LayerNorm")
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            linear(p + "attention.self." + n, d, d)
        linear(p + "attention.output.dense", d, d)
        norm(p + "attention.output.LayerNorm")
        linear(p + "intermediate.dense", d, f)
        linear(p + "output.dense", f, d)
        norm(p + "output.LayerNorm")
    linear("pooler.dense", d, d)
    tensors = {"bert." + n: a for n, a in w.items()}
    positions = np.arange(config["max_position_embeddings"], dtype="<i8")[None]
    tensors["bert.embeddings.position_ids"] = positions
    tensors["classifier.weight"] = normal(2, d, std=0.02)
    tensors["classifier.bias"] = np.zeros(2, dtype="<f4")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_safetensors(out_dir / "model.safetensors", tensors)
    return config, {n: a.astype(np.float64) for n, a in w.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    args = parser.parse_args()

    config, w = tiny_checkpoint(args.out / "data" / "bert-tiny-random")
    ids = [[2, 5, 9, 13, 3, 0, 0], [2, 7, 8, 3, 11, 12, 3]]
    mask = [[1, 1, 1, 1, 1, 0, 0], [1] * 7]
    types = [[0] * 7, [0, 0, 0, 0, 1, 1, 1]]
    hidden, pooled = bert_forward(w, config, ids, mask, types)
    tiny = {
        "checkpoint": "bert-tiny-random",
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "last_hidden_state": rounded(hidden),
        "pooled_output": rounded(pooled),
    }
    (args.out / "bert_tiny_reference.json").write_text(json.dumps(tiny) + "\n")
    print(f"wrote {args.out / 'bert_tiny_reference.json'}")

    checkpoint = args.source / "all-MiniLM-L6-v2"
    if not (checkpoint / "model.safetensors").is_file():
        print(f"skipped the MiniLM reference: {checkpoint} not found")
        return
    config = json.loads((checkpoint / "config.json").read_text())
    w = read_safetensors(checkpoint / "model.safetensors")
    w = {n.removeprefix("bert."): a for n, a in w.items()}
    vocab = json.loads((checkpoint / "tokenizer.json").read_text())["model"]["vocab"]
    ids, mask, types = encode(SENTENCES, vocab)
    hidden, pooled = bert_forward(w, config, ids, mask, types)
    reference = {
        "checkpoint": "all-MiniLM-L6-v2",
        "sentences": [list(s) if s[1] is not None else [s[0]] for s in SENTENCES],
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "hidden_stride": HIDDEN_STRIDE,
        "last_hidden_state_slice": rounded(hidden[:, :, ::HIDDEN_STRIDE]),
        "pooled_output": rounded(pooled),
    }
    (args.out / "bert_reference.json").write_text(json.dumps(reference) + "\n")
    print(f"wrote {args.out / 'bert_reference.json'}: {len(ids)} rows of {len(ids[0])} tokens")
    try:
        torch_hidden, torch_pooled = torch_forward(w, config, ids, mask, types)
    except ImportError:
        return
    valid = np.array(mask, dtype=bool)
    print(
        "torch float32 vs numpy float64: hidden states max |diff| "
        f"{np.abs(torch_hidden - hidden)[valid].max():.2e}, "
        f"pooled {np.abs(torch_pooled - pooled).max():.2e}"
    )


if __name__ == "__main__":
    main()
