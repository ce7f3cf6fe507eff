"""FLOPs and memory of one training step of a preset, counted from the code (no GPU needed).

    python benchmarks/sr3_flops.py [--preset sr3] [--batch-size 8]
    python benchmarks/sr3_flops.py --preset sr3-sr        # the thesis-scale stage, 272x480 -> 544x960, on crops

Builds the preset's model on PyTorch's "meta" device (shapes only: no memory, no arithmetic), runs one
forward + backward of the diffusion loss under torch.utils.flop_counter, and prints the parameter count,
the TFLOPs of the step, where the attention layers sit, and the weights + EMA + Adam state in GiB
and the activations kept for backward (the outputs of every leaf module, in fp32 and in bf16: an upper bound of
what autograd keeps). A GPU's step time is about FLOPs / (its dense bf16 throughput × utilisation).
A super-resolution stage is counted on its training crops (crop_size) and at its full output size for sampling.
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
    size = cfg.crop_size or cfg.image_size
    with torch.device("meta"):
        model = SR3UNet(unet_cfg)
        x_t = torch.zeros(cfg.batch_size, 3, *size)
        alpha_bar = torch.full((cfg.batch_size,), 0.5)
        cond = (torch.zeros(cfg.batch_size, unet_cfg.image_channels, *size), 0.9) if unet_cfg.image_channels else ()
    sides, kept = [], []   # label=None: the one-hot map is all zeros, the same shapes and FLOPs as a real map
    for m in model.modules():
        if isinstance(m, SelfAttention):
            m.register_forward_hook(lambda mod, inp, out: sides.append(tuple(inp[0].shape[-2:])))
        if not list(m.children()):
            m.register_forward_hook(lambda mod, inp, out: kept.append(out.numel() if isinstance(out, torch.Tensor) else 0))
    with FlopCounterMode(display=False) as fc:
        model(x_t, alpha_bar, None, *cond).float().pow(2).mean().backward()   # the loss's cost is the network's
    n = sum(p.numel() for p in model.parameters())
    u = model.config
    print(f"preset {a.preset}: cond={u.cond}, {u.num_res_blocks} blocks per level, channels {u.base_channels}x"
          f"{list(u.channel_mults)}, image {cfg.image_size[0]}x{cfg.image_size[1]}"
          + (f" from {cfg.lowres_size[0]}x{cfg.lowres_size[1]}, trained on {size[0]}x{size[1]} crops" if cfg.lowres_size else "")
          + f", batch {cfg.batch_size}")
    print(f"parameters: {n / 1e6:.1f} M; weights + EMA + Adam state (fp32): {n * 4 * 4 / 2**30:.2f} GiB")
    print(f"one training step (forward + backward): {fc.get_total_flops() / 1e12:.2f} TFLOPs")
    print(f"activations kept for backward (upper bound): {sum(kept) * 4 / 2**30:.1f} GiB in fp32, "
          f"{sum(kept) * 2 / 2**30:.1f} GiB in bf16 autocast")
    print(f"attention at feature maps: {sorted(set(sides))} ({len(sides)} layers)")
    if cfg.lowres_size:  # sampling runs the whole frame
        with torch.device("meta"):
            x = torch.zeros(1, 3, *cfg.image_size)
            with FlopCounterMode(display=False) as fs:
                model(x, torch.full((1,), 0.5), None, torch.zeros(1, unet_cfg.image_channels, *cfg.image_size), 0.9)
        print(f"one sampling call at {cfg.image_size[0]}x{cfg.image_size[1]}, one image: {fs.get_total_flops() / 1e12:.3f} TFLOPs")


if __name__ == "__main__":
    main()
