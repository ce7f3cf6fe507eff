"""The super-resolution cascade (05b_cascade): SR3's image condition, noise-conditioning augmentation, the stage's
training batches, `Cascade`, and the CLI's 256x448 default."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from surgdiff.cascade import (Cascade, ImageConditioned, chain, downsample, load_cascade, lowres_condition,
                              resize_labels, upsample)
from surgdiff.cli import main
from surgdiff.data import from_uint8, synthetic_scene, to_uint8
from surgdiff.diffusion import NoiseSchedule, q_sample
from surgdiff.model import DiffusionConfig, DiffusionModel, load_pretrained
from surgdiff.samplers import sample
from surgdiff.train import TrainConfig, diffusion_loss, random_crops
from surgdiff.unet import SR3UNet, UNetConfig

MICRO_SR = dict(base_channels=8, channel_mults=[1, 2], num_res_blocks=1, attn_resolutions=[], mid_attention=False,
                norm_groups=4, dropout=0.0, image_channels=3, zero_init=False)


def micro_stage(lowres=(8, 8), size=(16, 16), **over) -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel(DiffusionConfig(unet={**MICRO_SR, **over}, image_size=size, lowres_size=lowres, prediction="v"))


# --- the image condition in the U-Net --------------------------------------------------------------

def test_image_condition_shapes_and_dtypes():
    net = SR3UNet(UNetConfig.from_dict(MICRO_SR)).eval()
    x, lab = torch.randn(2, 3, 16, 24), torch.randint(0, 36, (2, 16, 24))
    out = net(x, torch.rand(2), lab, torch.randn(2, 3, 16, 24), 0.8)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert net.conv_in.in_channels == 3 + 3 + 36  # x_t, the upsampled image, the one-hot label map
    with pytest.raises(ValueError, match="lowres must be the low-resolution image"):
        net(x, torch.rand(2), lab)                                    # no image
    with pytest.raises(ValueError, match="lowres must be the low-resolution image"):
        net(x, torch.rand(2), lab, torch.randn(2, 3, 8, 12))          # not upsampled to x_t's size
    with pytest.raises(ValueError, match="float image"):
        net(x, torch.rand(2), lab, torch.zeros(2, 3, 16, 24, dtype=torch.uint8))
    with pytest.raises(ValueError, match="aug_alpha_bar"):
        net(x, torch.rand(2), lab, torch.randn(2, 3, 16, 24), torch.rand(3))
    base = SR3UNet(UNetConfig.from_dict({**MICRO_SR, "image_channels": 0}))
    with pytest.raises(ValueError, match="takes no image condition"):
        base(x, torch.rand(2), lab, torch.randn(2, 3, 16, 24))


def test_the_augmentation_level_reaches_the_network():
    net = SR3UNet(UNetConfig.from_dict(MICRO_SR)).eval()
    x, lab, lo = torch.randn(2, 3, 16, 16), torch.randint(0, 36, (2, 16, 16)), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        a, b = net(x, 0.5, lab, lo, 1.0), net(x, 0.5, lab, lo, 0.3)
        c = net(x, 0.5, lab, lo)  # the default level is a clean image
    assert not torch.allclose(a, b) and torch.equal(a, c)
    net(x, 0.5, lab, lo, torch.full((2,), 0.3)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.aug_embedding.parameters())


def test_stage_config_is_checked():
    with pytest.raises(ValueError, match="super-resolution stage needs both"):
        DiffusionConfig(unet=MICRO_SR, image_size=(16, 16))                       # image channels, no lowres_size
    with pytest.raises(ValueError, match="super-resolution stage needs both"):
        DiffusionConfig(unet={**MICRO_SR, "image_channels": 0}, image_size=(16, 16), lowres_size=(8, 8))
    with pytest.raises(ValueError, match="aug_alpha_bar"):
        DiffusionConfig(unet=MICRO_SR, image_size=(16, 16), lowres_size=(8, 8), aug_alpha_bar=0.0)
    with pytest.raises(ValueError, match="times an integer"):
        TrainConfig(model=MICRO_SR, image_size=(16, 16), lowres_size=(6, 6))
    with pytest.raises(ValueError, match="crop_size"):
        TrainConfig(model=MICRO_SR, image_size=(16, 16), lowres_size=(8, 8), crop_size=(20, 20))


# --- the condition and the training batches ------------------------------------------------------

def test_lowres_condition_is_augment_then_upsample():
    lo, eps = torch.rand(2, 3, 8, 14) * 2 - 1, torch.randn(2, 3, 8, 14)
    assert torch.equal(lowres_condition(lo, (32, 56)), upsample(lo, (32, 56)))
    assert torch.allclose(lowres_condition(lo, (32, 56), 0.7, eps), upsample(q_sample(lo, 0.7, eps), (32, 56)))
    # area downsampling undoes nothing of bicubic upsampling's blur, but a constant image survives both
    flat = torch.full((1, 3, 8, 14), 0.25)
    assert torch.allclose(downsample(upsample(flat, (32, 56)), (8, 14)), flat, atol=1e-6)


def test_training_loss_draws_augmentation_levels_in_range():
    seen = {}
    class Spy(torch.nn.Module):
        def forward(self, x_t, ab, label, lowres=None, aug_alpha_bar=None):
            seen.update(lowres=lowres, aug=aug_alpha_bar)
            return torch.zeros_like(x_t)
    cfg = TrainConfig(model=MICRO_SR, image_size=(16, 16), lowres_size=(8, 8), aug_alpha_bar_min=0.4, prediction="v")
    x0 = torch.rand(64, 3, 16, 16) * 2 - 1
    loss = diffusion_loss(Spy(), x0, torch.zeros(64, 16, 16, dtype=torch.long), NoiseSchedule.from_name("linear-2000"),
                          cfg, torch.Generator().manual_seed(0), lowres=downsample(x0, (8, 8)))
    assert torch.isfinite(loss)
    assert seen["lowres"].shape == x0.shape and seen["aug"].shape == (64,)
    assert 0.4 <= seen["aug"].min() < 0.55 and 0.85 < seen["aug"].max() <= 1.0


def test_random_crops_are_aligned_and_seeded():
    x = torch.arange(2 * 3 * 32 * 48, dtype=torch.float32).view(2, 3, 32, 48)
    lab = torch.arange(2 * 32 * 48).view(2, 32, 48)
    a = random_crops(x, lab, (8, 16), 4, (0, 5, 0))
    b = random_crops(x, lab, (8, 16), 4, (0, 5, 0))
    assert torch.equal(a[0], b[0]) and a[0].shape == (2, 3, 8, 16) and a[1].shape == (2, 8, 16)
    for i in range(2):  # image and label are cut at the same place, on multiples of 4
        r, c = divmod(int(a[1][i, 0, 0]) - i * 32 * 48, 48)
        assert r % 4 == 0 and c % 4 == 0 and torch.equal(a[0][i], x[i, :, r:r + 8, c:c + 16])


def test_a_stage_trains_from_the_cli_and_loads(tmp_path):
    cfg = TrainConfig(model=MICRO_SR, cond="concat", image_size=(32, 48), lowres_size=(8, 12), crop_size=(16, 16),
                      aug_alpha_bar_min=0.5, prediction="v", label_dropout=0.0, synthetic_scenes=4, steps=2, batch_size=2,
                      sample_every=0, checkpoint_every=2, num_threads=1, bf16=False, out=str(tmp_path / "run"))
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    assert main(["train", "--config", str(tmp_path / "c.json"), "--quiet"]) == 0
    stage = load_pretrained(tmp_path / "run")
    assert stage.is_stage and stage.config.lowres_size == (8, 12) and stage.image_size == (32, 48)


# --- the cascade ---------------------------------------------------------------------------------

def test_cascade_checks_its_stages_fit():
    base = load_pretrained("demo")
    with pytest.raises(ValueError, match="lifts"):
        Cascade(base, [micro_stage((8, 8), (16, 16))])
    with pytest.raises(ValueError, match="not a super-resolution stage"):
        Cascade(base, [base])


def test_cascade_samples_every_stage_reproducibly():
    torch.manual_seed(0)
    base = DiffusionModel(DiffusionConfig(unet={**MICRO_SR, "image_channels": 0}, image_size=(8, 8)))
    casc = Cascade(base, [micro_stage((8, 8), (16, 16)), micro_stage((16, 16), (32, 32))])
    lab = torch.from_numpy(synthetic_scene(3, (32, 32))[1].astype(np.int64))[None].repeat(2, 1, 1)
    kw = dict(progress=False, steps=2, stage_steps=2, aug_alpha_bar=0.8)
    x, outs = casc.sample(lab, generator=torch.Generator().manual_seed(1), return_stages=True, **kw)
    assert [tuple(o.shape) for o in outs] == [(2, 3, 8, 8), (2, 3, 16, 16), (2, 3, 32, 32)] and x is outs[-1]
    assert torch.equal(x, casc.sample(lab, generator=torch.Generator().manual_seed(1), **kw))
    assert not torch.equal(x, casc.sample(lab, generator=torch.Generator().manual_seed(2), **kw))
    with pytest.raises(ValueError, match="aug_alpha_bar"):
        casc.sample(lab, aug_alpha_bar=0.0, progress=False)


def test_chain_cuts_at_the_size_asked_for():
    torch.manual_seed(0)
    base = DiffusionModel(DiffusionConfig(unet={**MICRO_SR, "image_channels": 0}, image_size=(8, 8)))
    s1, s2 = micro_stage((8, 8), (16, 16)), micro_stage((16, 16), (32, 32))
    whole = chain([base, s1, s2])
    assert isinstance(whole, Cascade) and whole.image_size == (32, 32) and whole.stages == [s1, s2]
    assert chain([base, s1, s2], (16, 16)).stages == [s1]
    assert chain([base, s1, s2], (8, 8)) is base and chain([base]) is base
    with pytest.raises(ValueError, match="size 64x64: these models make 8x8, 16x16, 32x32"):
        chain([base, s1, s2], (64, 64))
    assert chain([base, s1, s2], (64, 64), strict=False).image_size == (32, 32)  # bench: run it whole, resize after


def test_pretrained_models_load_channels_last():
    for name in ("demo", "demo-sr"):
        conv = next(m for m in load_pretrained(name).modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last), name


def test_image_conditioned_repeats_the_condition_for_guidance():
    st = micro_stage()
    cond = torch.randn(2, 3, 16, 16)
    net = ImageConditioned(st, cond, 0.9)
    x, lab = torch.randn(2, 3, 16, 16), torch.randint(0, 36, (2, 16, 16))
    with torch.no_grad():
        one = net(x, torch.full((2,), 0.5), lab)
        two = net(torch.cat([x, x]), torch.full((4,), 0.5), torch.cat([lab, lab]))
    assert torch.allclose(two[:2], one, atol=1e-5) and torch.allclose(two[2:], one, atol=1e-5)


def test_resize_labels_matches_pil_nearest():
    lab = synthetic_scene(4, (256, 448))[1]
    want = np.asarray(Image.fromarray(lab).resize((112, 64), Image.NEAREST))
    got = resize_labels(torch.from_numpy(lab.astype(np.int64))[None], (64, 112))[0].numpy()
    assert np.array_equal(got, want)


# --- the shipped stage ----------------------------------------------------------------------------

def test_the_shipped_stage_agrees_with_its_input_when_downsampled():
    "The stage adds detail, not content: its output, shrunk back to 64x112, is close to the image it was given."
    stage = load_pretrained("demo-sr")
    assert stage.config.lowres_size == (64, 112) and stage.image_size == (256, 448)
    pairs = [synthetic_scene(3_000_000 + i, (256, 448)) for i in range(2)]
    hr = from_uint8(np.stack([p[0] for p in pairs]))
    lab = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
    lo = downsample(hr, (64, 112))
    cond = lowres_condition(lo, (256, 448))
    with torch.no_grad():
        x = sample(ImageConditioned(stage, cond, 1.0), lab, generator=torch.Generator().manual_seed(0), progress=False)
    back = downsample(x.clamp(-1, 1), (64, 112))
    psnr = 10 * torch.log10(4 / (back - lo).square().mean())
    # the same label maps drawn in other styles: what agreement with the label map alone would give
    other = from_uint8(np.stack([synthetic_scene(3_000_000 + i, (256, 448), style_seed=7 + i)[0] for i in range(2)]))
    other_psnr = 10 * torch.log10(4 / (downsample(other, (64, 112)) - lo).square().mean())
    assert psnr > 25 and psnr > other_psnr + 8, f"stage output shrunk back vs its input: {psnr:.1f} dB, other styles {other_psnr:.1f} dB"


def test_cli_writes_256x448_by_default_and_the_base_on_request(tmp_path):
    labels = tmp_path / "L"
    labels.mkdir()
    Image.fromarray(synthetic_scene(7, (540, 960))[1]).save(labels / "Video1_frame000010.png")  # a CaDIS-sized map
    assert main(["sample", "--labels", str(labels), "--out", str(tmp_path / "o"), "--seed", "3", "--quiet"]) == 0
    assert Image.open(tmp_path / "o" / "Video1_frame000010.png").size == (448, 256)
    assert main(["sample", "--labels", str(labels), "--size", "64x112", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert Image.open(tmp_path / "b" / "Video1_frame000010.png").size == (112, 64)
    assert main(["sample", "--labels", str(labels), "--size", "100x100", "--out", str(tmp_path / "c"), "--quiet"]) == 2
    # Python gives the same pixels as the CLI: the cascade, the same label map at 256x448, the same seed
    casc = load_cascade()
    lab = np.asarray(Image.fromarray(synthetic_scene(7, (540, 960))[1]).resize((448, 256), Image.NEAREST))
    with torch.no_grad():
        x = casc.sample(torch.from_numpy(lab.astype(np.int64))[None], generator=torch.Generator().manual_seed(3),
                        progress=False)
    py = to_uint8(x.float(), check_range=False)[0]  # the CLI's quantisation (float64), clipped
    assert np.array_equal(py, np.asarray(Image.open(tmp_path / "o" / "Video1_frame000010.png")))

