#!/usr/bin/env python3
"""PyTorch's side of `cargo bench --bench mk_layers -- mlp_products`: the five large matrix
products of the MLP 784-512-512-10's training step at batch 128, with the operands laid out
as a training step has them (the weight row-major [d_in, d_out] as the project stores it;
transposes are views, as autograd makes them), fp32 on the CPU.

    python3 benches/reference/mlp_products.py [--threads 2] [--repeats 200]

Prints the median and the best time of `--repeats` calls of each product, in microseconds
(criterion's middle estimate is the one to set beside the median), and GFLOP/s at the median.
Needs only `torch`.
"""

import argparse
import statistics
import time

import torch

# (name, rows of the result, columns, inner dimension, left operand transposed, right
# operand transposed): `weight_gradient` is x^T dy, `input_gradient` dy W^T.
PRODUCTS = [
    ("forward_784x512", 128, 512, 784, False, False),
    ("forward_512x512", 128, 512, 512, False, False),
    ("input_gradient_512x512", 128, 512, 512, False, True),
    ("weight_gradient_784x512", 784, 512, 128, True, False),
    ("weight_gradient_512x512", 512, 512, 128, True, False),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} calls each")
    for name, m, n, k, left_t, right_t in PRODUCTS:
        a = torch.rand(k, m).t() if left_t else torch.rand(m, k)
        b = torch.rand(n, k).t() if right_t else torch.rand(k, n)
        out = torch.empty(m, n)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - start)
        median, best = statistics.median(times) * 1e6, min(times) * 1e6
        gflops = 2 * m * n * k / median / 1e3
        print(f"{name}: median {median:.1f} us (best {best:.1f}), {gflops:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
