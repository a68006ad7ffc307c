#!/usr/bin/env python3
"""PyTorch's side of `cargo bench --bench mk_layers -- resnet18_convs`: every distinct
convolution of ResNet-18 with the ImageNet stem on 64x64 images at batch 128, forward and
backward apart (the backward with the input gradient except for the stem, no bias), fp32 on
the CPU, through the same ATen calls a training step makes.

    python3 benches/reference/conv_layers.py [--threads 2] [--repeats 20]

Prints the median and the best of `--repeats` calls of each, in milliseconds (criterion's
middle estimate is the one to set beside the median), and the times per step each
convolution runs. Needs only `torch`.
"""

import argparse
import statistics
import time

import torch

# (name, input channels, input side, output channels, kernel side, stride, padding, times per
# step): the list `RESNET18_CONVS` in benches/mk_layers.rs.
CONVS = [
    ("stem_7x7_3to64_64px", 3, 64, 64, 7, 2, 3, 1),
    ("3x3_64to64_16px", 64, 16, 64, 3, 1, 1, 4),
    ("3x3s2_64to128_16px", 64, 16, 128, 3, 2, 1, 1),
    ("1x1s2_64to128_16px", 64, 16, 128, 1, 2, 0, 1),
    ("3x3_128to128_8px", 128, 8, 128, 3, 1, 1, 3),
    ("3x3s2_128to256_8px", 128, 8, 256, 3, 2, 1, 1),
    ("1x1s2_128to256_8px", 128, 8, 256, 1, 2, 0, 1),
    ("3x3_256to256_4px", 256, 4, 256, 3, 1, 1, 3),
    ("3x3s2_256to512_4px", 256, 4, 512, 3, 2, 1, 1),
    ("1x1s2_256to512_4px", 256, 4, 512, 1, 2, 0, 1),
    ("3x3_512to512_2px", 512, 2, 512, 3, 1, 1, 3),
]
BATCH = 128


def timed(call, repeats):
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, min(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} calls each")
    for name, ci, side, co, kernel, stride, pad, per_step in CONVS:
        x = torch.rand(BATCH, ci, side, side)
        w = torch.rand(co, ci, kernel, kernel)
        y = torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)
        dy = torch.rand_like(y)
        mask = [not name.startswith("stem"), True, False]

        def forward():
            torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)

        def backward():
            torch.ops.aten.convolution_backward(
                dy, x, w, None, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], 1, mask
            )

        for part, call in (("forward", forward), ("backward", backward)):
            median, best = timed(call, args.repeats)
            print(f"{name}_{part}: median {median:.3f} ms (best {best:.3f}), {per_step} per step")


if __name__ == "__main__":
    main()
