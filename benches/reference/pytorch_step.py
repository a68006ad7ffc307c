#!/usr/bin/env python3
"""Side-by-side reference: the models of `reproduce bench`, trained in PyTorch on the same
machine, baseline and majority kernels (MK) at several k, so anyone can check both the MK
overhead ratio and the framework ratio (ours / PyTorch).

    python3 benches/reference/pytorch_step.py                      # CPU, fp32, every family
    python3 benches/reference/pytorch_step.py --device cuda --dtype bf16

Same shapes, optimisers and batch as `reproduce bench`: MLP 784-512-512-10 on MNIST (SGD
momentum 0.9, lr 0.01), CIFAR ResNet-20 (3x3 stem, basic blocks, 1x1 projection shortcuts
with BatchNorm, no conv bias) on CIFAR-10 (SGD momentum 0.9, lr 0.05, wd 5e-4), and a BERT-style
post-norm encoder (2 layers, hidden 128, 4 heads, FFN 512, 64 tokens, vocabulary 30522, pooler
+ head; AdamW lr 1e-4 wd 0.01). MNIST is read from the shared idx files, CIFAR-10 from the
project's decoded cache (`reproduce bench --family resnet` builds it); the encoder gets token
ids of SST-2's shape (64 tokens per example), which cost exactly what real ids cost.

MK here is the direct implementation: every dense/conv kernel holds k copies, each step draws
Dirichlet(1) coefficients per layer and mixes with a tensordot; autograd gives each copy
p_i * dL/dW and the stock optimiser updates all copies (foreach kernels).

Needs only `torch` (2.x). Prints a markdown table and writes CSV rows (`--out`).
"""

import argparse
import csv
import glob
import gzip
import json
import math
import os
import platform
import socket
import statistics
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- majority-kernel layers
class MkMixin:
    """k copies of `weight` ([k, *shape]); `self.p` ([k]) is set before every step."""

    def make_copies(self, weight, k):
        self.k = k
        self.copies = nn.Parameter(weight.detach().unsqueeze(0).repeat(k, *([1] * weight.dim())))
        del self.weight
        self.register_buffer("p", torch.full((k,), 1.0 / k), persistent=False)

    def kernel(self):
        return torch.tensordot(self.p, self.copies, dims=1)


class MkLinear(nn.Linear, MkMixin):
    def __init__(self, base: nn.Linear, k: int):
        super().__init__(base.in_features, base.out_features, base.bias is not None)
        self.load_state_dict(base.state_dict())
        self.make_copies(base.weight, k)

    def forward(self, x):
        return F.linear(x, self.kernel(), self.bias)


class MkConv2d(nn.Conv2d, MkMixin):
    def __init__(self, base: nn.Conv2d, k: int):
        super().__init__(base.in_channels, base.out_channels, base.kernel_size, base.stride,
                         base.padding, bias=base.bias is not None)
        self.load_state_dict(base.state_dict())
        self.make_copies(base.weight, k)

    def forward(self, x):
        return self._conv_forward(x, self.kernel(), self.bias)


def to_mk(module: nn.Module, k: int) -> nn.Module:
    """Replaces every Linear/Conv2d (embeddings and norms stay single) by its MK twin."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, MkLinear(child, k))
        elif isinstance(child, nn.Conv2d):
            setattr(module, name, MkConv2d(child, k))
        else:
            to_mk(child, k)
    return module


def mk_layers(model):
    return [m for m in model.modules() if isinstance(m, MkMixin)]


# ---------------------------------------------------------------- models
def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512),
                         nn.ReLU(), nn.Linear(512, 10))


class Block(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    def __init__(self, blocks=(3, 3, 3), widths=(16, 32, 64), classes=10, stem="cifar"):
        super().__init__()
        if stem == "cifar":
            self.stem = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
            self.pool = nn.Identity()
        else:
            self.stem = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
            self.pool = nn.MaxPool2d(3, 2, 1)
        self.bn = nn.BatchNorm2d(widths[0])
        layers, c_in = [], widths[0]
        for stage, (n, w) in enumerate(zip(blocks, widths)):
            for b in range(n):
                layers.append(Block(c_in, w, 2 if stage > 0 and b == 0 else 1))
                c_in = w
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, classes)

    def forward(self, x):
        x = self.blocks(self.pool(F.relu(self.bn(self.stem(x)))))
        return self.head(x.mean(dim=(2, 3)))


class EncoderBlock(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.output = (nn.Linear(d, d) for _ in range(4))
        self.ff_in, self.ff_out = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.attention_norm = nn.LayerNorm(d, eps=1e-12)
        self.ff_norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x, bias):
        b, t, d = x.shape
        h = self.heads
        split = lambda y: y.view(b, t, h, d // h).transpose(1, 2)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(2, 3) / math.sqrt(d // h) + bias
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = self.attention_norm(x + self.output(context))
        return self.ff_norm(x + self.ff_out(F.gelu(self.ff_in(x))))


class Encoder(nn.Module):
    def __init__(self, vocab=30522, d=128, layers=2, heads=4, ffn=512, max_len=64, classes=2):
        super().__init__()
        self.token = nn.Embedding(vocab, d)
        self.position = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.blocks = nn.ModuleList(EncoderBlock(d, heads, ffn) for _ in range(layers))
        self.pooler, self.head = nn.Linear(d, d), nn.Linear(d, classes)

    def forward(self, ids, bias):
        t = ids.shape[1]
        x = self.norm(self.token(ids) + self.position.weight[:t])
        for block in self.blocks:
            x = block(x, bias)
        return self.head(torch.tanh(self.pooler(x[:, 0])))


def encoder_mk(model, k):
    # As `reproduce bench`: the attention and feed-forward projections are MK, pooler and
    # head stay single.
    for block in model.blocks:
        to_mk(block, k)
    return model


# ---------------------------------------------------------------- data
def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    dims = struct.unpack(">" + "I" * (magic & 0xFF), raw[4:4 + 4 * (magic & 0xFF)])
    data = torch.frombuffer(bytearray(raw[4 + 4 * len(dims):]), dtype=torch.uint8)
    return data.view(*dims)


def mnist(data_dir, n):
    images = read_idx(os.path.join(data_dir, "mnist", "train-images-idx3-ubyte.gz"))[:n]
    labels = read_idx(os.path.join(data_dir, "mnist", "train-labels-idx1-ubyte.gz"))[:n]
    x = (images.float() / 255.0 - 0.1307) / 0.3081
    return x.unsqueeze(1), labels.long()


def cifar10(cache_dir, n):
    # The largest cache is the full dataset's: the tests write small fixture caches beside it,
    # often newer.
    files = sorted(glob.glob(os.path.join(cache_dir, "cifar10-32-*.mkimg")), key=os.path.getsize)
    if not files:
        raise SystemExit(f"no CIFAR-10 cache in {cache_dir}: run `reproduce bench --family resnet` "
                         "once (it decodes the shared JPEGs into the cache)")
    with open(files[-1], "rb") as f:
        assert f.read(8) == b"MKIMG002", "unknown cache format"
        header_len, = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        train, test = header["train"], header["test"]
        labels = torch.frombuffer(bytearray(f.read(2 * train)), dtype=torch.int16)[:n].long()
        f.read(2 * test)
        c, h, w = header["image_shape"]
        if train < n:
            raise SystemExit(f"{files[-1]}: {train} training images, the benchmark needs {n}")
        pixels = torch.frombuffer(bytearray(f.read(n * c * h * w)), dtype=torch.uint8)
    x = pixels.view(n, c, h, w).float() / 255.0
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    return (x - mean) / std, labels


# ---------------------------------------------------------------- timing
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_steps(model, batches, opt, device, dtype, k, dirichlet):
    """Runs the batches; returns seconds per step."""
    layers = mk_layers(model) if k > 0 else []
    autocast = dtype != torch.float32
    sync(device)
    start = time.perf_counter()
    for inputs, labels in batches:
        for layer in layers:
            layer.p.copy_(dirichlet.sample())
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            logits = model(*inputs)
            loss = F.cross_entropy(logits.float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return (time.perf_counter() - start) / len(batches)


def cpu_model():
    """The CPU's model name as `reproduce bench` records it (/proc/cpuinfo's "model name"),
    so the docs pair this CSV with our rows of the same machine, not only the same host name."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="mlp,resnet,transformer")
    ap.add_argument("--k", default="1,2,4,8")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default per family)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "f16"])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--data-dir", default=os.environ.get("MK_DATA_DIR", "../shared/data"))
    ap.add_argument("--cache-dir", default=os.environ.get(
        "MK_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "majority-kernels")))
    ap.add_argument("--out", default=None, help="CSV file for the rows (default: print only)")
    ap.add_argument("--blocks", default="3,3,3", help="ResNet blocks per stage (2,2,2,2: ResNet-18)")
    ap.add_argument("--widths", default="16,32,64", help="ResNet channels per stage")
    ap.add_argument("--stem", default="cifar", choices=["cifar", "imagenet"],
                    help="imagenet: 7x7 stride-2 stem and max-pool on random 64x64 images "
                         "(the cost of Tiny ImageNet's; `reproduce bench --stem imagenet` "
                         "uses the real images)")
    ap.add_argument("--encoder", default="2,128,4,512", help="encoder layers,hidden,heads,ffn")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    ks = [int(k) for k in args.k.split(",")]
    default_steps = {"mlp": 200, "resnet": 4, "transformer": 4}
    rows = []
    for family in args.family.split(","):
        steps = args.steps or default_steps[family]
        n = (steps + 1) * args.batch
        if family == "mlp":
            x, y = mnist(args.data_dir, n)
            build, mk = mlp, to_mk
            make_opt = lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9)
            inputs = lambda i: ((x[i].to(device),), y[i].to(device))
        elif family == "resnet":
            if args.stem == "cifar":
                x, y = cifar10(args.cache_dir, n)
                classes = 10
            else:
                x, y, classes = torch.randn(n, 3, 64, 64), torch.randint(0, 200, (n,)), 200
            blocks = tuple(int(b) for b in args.blocks.split(","))
            widths = tuple(int(w) for w in args.widths.split(","))
            build = lambda: ResNet(blocks, widths, classes, args.stem)
            mk = to_mk
            make_opt = lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=5e-4)
            inputs = lambda i: ((x[i].to(device),), y[i].to(device))
        elif family == "transformer":
            ids = torch.randint(1000, 30522, (n, 64))
            bias = torch.zeros(n, 1, 1, 64)
            y = torch.randint(0, 2, (n,))
            layers, d, heads, ffn = (int(v) for v in args.encoder.split(","))
            build = lambda: Encoder(d=d, layers=layers, heads=heads, ffn=ffn)
            mk = encoder_mk
            make_opt = lambda ps: torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.01)
            inputs = lambda i: ((ids[i].to(device), bias[i].to(device)), y[i].to(device))
        else:
            raise SystemExit(f"unknown family {family}: expected mlp, resnet or transformer")
        batches = [inputs(slice(s * args.batch, (s + 1) * args.batch)) for s in range(steps)]
        warm = batches[:1]

        def timed(k):
            model = build()
            if k > 0:
                model = mk(model, k)
            model = model.to(device).train()
            opt = make_opt(model.parameters())
            alpha = torch.ones(max(k, 1), device=device)
            dirichlet = torch.distributions.Dirichlet(alpha)
            train_steps(model, warm, opt, device, dtype, k, dirichlet)
            return 1e3 * train_steps(model, batches, opt, device, dtype, k, dirichlet)

        baseline, per_k = [], {k: [] for k in ks}
        for _ in range(args.repeats):
            baseline.append(timed(0))
            for k in ks:
                per_k[k].append(timed(k))
        base = statistics.median(baseline)
        for k in ks:
            rows.append(dict(family=family, batch=args.batch, k=k, dtype=args.dtype,
                             device=args.device, threads=torch.get_num_threads(),
                             baseline_ms=round(base, 4),
                             mk_ms=round(statistics.median(per_k[k]), 4),
                             ratio=round(statistics.median(per_k[k]) / base, 4),
                             torch=torch.__version__, host=socket.gethostname(),
                             cpu=cpu_model()))
    print(f"PyTorch {torch.__version__}, {args.device}, {args.dtype}, "
          f"{torch.get_num_threads()} threads, batch {args.batch}, median of {args.repeats}\n")
    print("| family | k | baseline ms/step | mk ms/step | ratio |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['family']} | {r['k']} | {r['baseline_ms']:.3f} | {r['mk_ms']:.3f} | "
              f"{r['ratio']:.3f} |")
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        tmp = args.out + ".tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, args.out)
        print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
