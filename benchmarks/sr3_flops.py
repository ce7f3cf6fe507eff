"""FLOPs and memory of one training step of a preset, counted from the code (no GPU needed).

    python benchmarks/sr3_flops.py [--preset sr3] [--batch-size 8]

Builds the preset's model on PyTorch's "meta" device (shapes only: no memory, no arithmetic), runs one
forward + backward of the diffusion loss under torch.utils.flop_counter, and prints the parameter count,
the TFLOPs of the step, where the attention layers sit, and the weights + EMA + Adam state in GiB
(activations not counted). A GPU's step time is about FLOPs / (its dense bf16 throughput × utilisation).
"""
import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from surgdiff.train import TRAIN_PRESETS, TrainConfig
from surgdiff.layers import SelfAttention
from surgdiff.unet import SR3UNet, UNetConfig


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="sr3", choices=sorted(TRAIN_PRESETS))
    p.add_argument("--batch-size", type=int)
    a = p.parse_args()
    cfg = TrainConfig.from_dict({**TRAIN_PRESETS[a.preset], **({"batch_size": a.batch_size} if a.batch_size else {})})
    unet_cfg = UNetConfig.from_dict(cfg.model_config().unet)
    with torch.device("meta"):
        model = SR3UNet(unet_cfg)
        x_t = torch.zeros(cfg.batch_size, 3, *cfg.image_size)
        alpha_bar = torch.full((cfg.batch_size,), 0.5)
    sides = []   # label=None: the one-hot map is all zeros, the same shapes and FLOPs as a real map
    for m in model.modules():
        if isinstance(m, SelfAttention):
            m.register_forward_hook(lambda mod, inp, out: sides.append(tuple(inp[0].shape[-2:])))
    with FlopCounterMode(display=False) as fc:
        model(x_t, alpha_bar, None).float().pow(2).mean().backward()   # the loss's cost is the network's
    n = sum(p.numel() for p in model.parameters())
    u = model.config
    print(f"preset {a.preset}: cond={u.cond}, {u.num_res_blocks} blocks per level, channels {u.base_channels}x"
          f"{list(u.channel_mults)}, image {cfg.image_size[0]}x{cfg.image_size[1]}, batch {cfg.batch_size}")
    print(f"parameters: {n / 1e6:.1f} M; weights + EMA + Adam state (fp32): {n * 4 * 4 / 2**30:.2f} GiB")
    print(f"one training step (forward + backward): {fc.get_total_flops() / 1e12:.2f} TFLOPs")
    print(f"attention at feature maps: {sorted(set(sides))} ({len(sides)} layers)")


if __name__ == "__main__":
    main()
