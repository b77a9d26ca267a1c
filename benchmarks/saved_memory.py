"""Bytes a StyleGAN training step keeps for backward, per backend (CPU is enough: what autograd
saves does not depend on the device).

    python benchmarks/saved_memory.py [--resolution 256] [--batch 2] [--backends eager,ref]

G: G(z) for the generator's loss. D: D(fakes), a D step without R1. D+R1: D(fakes) plus R1 on
reals (D(reals) and its input gradient, kept differentiable), what a D step with R1 holds before
its backward. The ratio against eager is of G + D. Each storage counts once
(``torch.autograd.graph.saved_tensors_hooks``); parameters count too (they are saved by the
convolutions), the same for every backend.
"""
from __future__ import annotations

import argparse
from contextlib import nullcontext

import torch

from stylegan_fast.bench.model_cases import Networks
from stylegan_fast.ops import use_backend
from stylegan_fast.train.loss import r1_penalty
from stylegan_fast.train.memory import checkpoint_top_blocks, saved_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--backends", default="eager,ref")
    parser.add_argument("--checkpoint-blocks", type=int, default=0,
                        help="checkpoint the top N blocks of G and D (as train does)")
    args = parser.parse_args()
    torch.manual_seed(0)
    nets = Networks()
    G, D = nets.generator(args.resolution), nets.discriminator(args.resolution)
    if args.checkpoint_blocks:
        checkpoint_top_blocks(G, D, args.checkpoint_blocks)
    z = torch.randn(args.batch, nets.latent_dim)
    reals = torch.randn(args.batch, 3, args.resolution, args.resolution)
    with torch.no_grad():
        fakes = G(z)
    mib = 2.0 ** 20
    rows = {}
    for backend in args.backends.split(","):
        with use_backend(backend):
            _, g = saved_bytes(lambda: G(z))
            _, d = saved_bytes(lambda: D(fakes))
            _, d_r1 = saved_bytes(lambda: (D(fakes), r1_penalty(D, reals, nullcontext())))
        rows[backend] = (g, d, d_r1)
    base = rows.get("eager")
    print(f"{args.resolution} px, batch {args.batch}, float32, {args.checkpoint_blocks} "
          f"checkpointed blocks, MiB kept for backward")
    print(f"{'backend':8s} {'G':>8s} {'D':>8s} {'G+D':>8s} {'x eager':>8s} {'D+R1':>8s} "
          f"{'x eager':>8s}")
    for backend, (g, d, d_r1) in rows.items():
        ratio = f"{(g + d) / (base[0] + base[1]):8.2f}" if base else f"{'-':>8s}"
        ratio_r1 = f"{d_r1 / base[2]:8.2f}" if base else f"{'-':>8s}"
        print(f"{backend:8s} {g / mib:8.1f} {d / mib:8.1f} {(g + d) / mib:8.1f} {ratio} "
              f"{d_r1 / mib:8.1f} {ratio_r1}")


if __name__ == "__main__":
    main()
