"""Tests of surgdiff.unet (SR3UNet, UNetConfig) and surgdiff.layers (ResBlock, SPADE, SPADEResBlock)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from surgdiff.data import IGNORE, num_classes, remap
from surgdiff.layers import SPADE, ResBlock, SPADEResBlock, one_hot_labels, parameter_free_norm
from surgdiff.unet import SR3UNet, UNetConfig, count_parameters

MODES = ("concat", "spade", "both")
# a very small U-Net: 2 levels, so inputs must be multiples of 2; fast enough to build dozens of
MICRO = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attn_resolutions=(8,), attn_side=16,
             norm_groups=4, spade_hidden=8, zero_init=False)


def cadis_labels(grouping, shape, seed=0) -> torch.Tensor:
    "Random CaDIS ids remapped to `grouping` (so exp2/exp3 contain the ignore id), plus an ignore stripe."
    g = torch.Generator().manual_seed(seed)
    label = remap(torch.randint(0, 36, shape, generator=g), grouping).long()
    label[..., :2] = IGNORE
    return label


def inputs(batch, H, W, grouping=None, seed=0, n_classes=None):
    "x_t, alpha_bar and a label map: CaDIS ids under `grouping`, or uniform ids in [0, n_classes)."
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch, 3, H, W, generator=g)
    alpha_bar = torch.rand(batch, generator=g)
    if n_classes is None:
        label = cadis_labels(grouping, (batch, H, W), seed)
    else:
        label = torch.randint(0, n_classes, (batch, H, W), generator=g)
        label[..., :2] = IGNORE
    return x_t, alpha_bar, label


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    "These models are small: one thread avoids threading overhead (and oversubscription on a busy machine)."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- shapes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("grouping", ["exp1", "exp2", "exp3", None])  # 8, 17, 25, 36 classes
def test_shapes_groupings(grouping):
    # "both" exercises the one-hot concatenation and the SPADE layers with K label channels
    K = num_classes(grouping)
    model = SR3UNet(UNetConfig(num_classes=K, cond="both", **MICRO))
    for size in [(16, 16), (12, 20)]:  # square and rectangular
        x_t, alpha_bar, label = inputs(2, *size, grouping=grouping)
        assert (label == IGNORE).any() and label[label != IGNORE].max() < K
        with torch.no_grad():
            out = model(x_t, alpha_bar, label)
        assert out.shape == (2, 3, *size) and out.dtype == x_t.dtype and torch.isfinite(out).all()


@pytest.mark.parametrize("K", [18, 26])  # class counts that include an explicit extra class
def test_shapes_other_class_counts(K):
    model = SR3UNet(UNetConfig(num_classes=K, cond="both", **MICRO))
    x_t, alpha_bar, label = inputs(1, 12, 20, n_classes=K)
    label[0, 5, 5] = K - 1
    assert model(x_t, alpha_bar, label).shape == (1, 3, 12, 20)


@pytest.mark.parametrize("cond", MODES)
def test_tiny_preset_square_and_16_9(cond):
    torch.manual_seed(0)
    model = SR3UNet(UNetConfig.preset("tiny", cond=cond))
    for H, W in [(64, 64), (72, 128)]:  # 72x128: a 16:9 crop, multiples of 8
        x_t, alpha_bar, label = inputs(1, H, W)
        with torch.no_grad():
            assert model(x_t, alpha_bar, label).shape == (1, 3, H, W)


def test_input_channels_per_mode():
    K = 36
    convs = {cond: SR3UNet(UNetConfig(cond=cond, **MICRO)).conv_in.in_channels for cond in MODES}
    assert convs == {"concat": 3 + K, "spade": 3, "both": 3 + K}


def test_bad_inputs_raise():
    model = SR3UNet(UNetConfig.preset("tiny"))
    x_t, alpha_bar, label = inputs(1, 64, 64)
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.randn(1, 3, 60, 64), alpha_bar, label[:, :60])
    with pytest.raises(ValueError, match=r"\[0, 36\)"):
        model(x_t, alpha_bar, torch.full_like(label, 40))
    with pytest.raises(ValueError, match="shape"):
        model(x_t, alpha_bar, label[:, :32])
    with pytest.raises(ValueError, match="alpha_bar"):
        model(x_t, torch.rand(3), label)
    with pytest.raises(ValueError, match="x_t"):
        model(torch.randn(1, 4, 64, 64), alpha_bar, label)


# --- labels ---------------------------------------------------------------------------------------

def test_one_hot_ignore_is_all_zero():
    label = torch.tensor([[[0, 3], [IGNORE, 1]]])
    oh = one_hot_labels(label, 4, (1, 2, 2))
    assert oh[0, :, 1, 0].sum() == 0
    assert torch.equal(oh.argmax(1)[0][label[0] != IGNORE], label[0][label[0] != IGNORE])
    assert torch.equal(oh.sum(1), (label != IGNORE).float())


@pytest.mark.parametrize("cond", MODES)
def test_all_ignore_label_equals_null_label(cond):
    torch.manual_seed(0)
    model = SR3UNet(UNetConfig(cond=cond, **MICRO)).eval()
    x_t, alpha_bar, label = inputs(2, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x_t, alpha_bar, torch.full_like(label, IGNORE)), model(x_t, alpha_bar, None))
        assert not torch.equal(model(x_t, alpha_bar, label), model(x_t, alpha_bar, None))


def test_scalar_noise_level_broadcasts():
    model = SR3UNet(UNetConfig(**MICRO)).eval()
    x_t, _, label = inputs(2, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x_t, 0.3, label), model(x_t, torch.tensor([0.3, 0.3]), label))
        assert not torch.equal(model(x_t, 0.3, label), model(x_t, 0.7, label))


# --- SPADE ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["group", "batch", "instance"])
@pytest.mark.parametrize("shared", [False, True])
def test_spade_with_zero_gamma_beta_is_plain_norm(norm, shared):
    torch.manual_seed(0)
    K, C, hidden = 17, 16, 8
    layer = SPADE(C, K, hidden=hidden, norm=norm, groups=4, shared=shared)
    torch.nn.init.zeros_(layer.to_gamma_beta.weight)
    torch.nn.init.zeros_(layer.to_gamma_beta.bias)
    x = 3 * torch.randn(4, C, 10, 14) + 1
    seg = torch.rand(4, hidden, 10, 14) if shared else one_hot_labels(cadis_labels("exp2", (4, 20, 28)), K, (4, 20, 28))
    expected = {"group": F.group_norm(x, 4), "batch": F.batch_norm(x, None, None, training=True),
                "instance": F.instance_norm(x)}[norm]
    assert torch.allclose(layer(x, seg), expected, atol=1e-5)
    assert torch.allclose(parameter_free_norm(norm, C, 4)(x), expected, atol=1e-5)
    # and with the modulation on, SPADE is *not* the plain norm
    torch.nn.init.normal_(layer.to_gamma_beta.weight)
    assert not torch.allclose(layer(x, seg), expected, atol=1e-3)


def test_spade_rejects_wrong_label_channels():
    layer = SPADE(8, num_classes=36, hidden=8, groups=4)
    with pytest.raises(ValueError, match="36 channels"):
        layer(torch.randn(1, 8, 4, 4), torch.zeros(1, 17, 4, 4))
    with pytest.raises(ValueError, match="norm"):
        SPADE(8, 36, norm="layer")


def locality_ratio(config, size=32, seed=0):
    torch.manual_seed(seed)
    model = SR3UNet(config).eval()
    x_t = torch.randn(1, 3, size, size)
    label = torch.zeros(1, size, size, dtype=torch.long)
    edited = label.clone()
    region = (slice(None), slice(8, 16), slice(12, 22))
    edited[region] = 4
    with torch.no_grad():
        diff = (model(x_t, 0.5, edited) - model(x_t, 0.5, label)).abs().mean(1)
    inside = torch.zeros_like(diff, dtype=torch.bool)
    inside[region] = True
    return (diff[inside].mean() / diff[~inside].mean()).item()


@pytest.mark.parametrize("shared,kernel", [(False, 3), (True, 3), (True, 1)])
def test_label_edit_changes_output_locally_in_spade_mode(shared, kernel):
    # "spade" mode: nothing is concatenated to x_t, so the label reaches the output only via SPADE.
    # Fresh model (zero_init=False: with zero_init the output is 0 whatever the label), two levels and
    # no attention, so the receptive field is small and locality is a property of the architecture.
    config = UNetConfig(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attn_resolutions=(),
                        mid_attention=False, norm_groups=8, spade_hidden=16, spade_shared=shared,
                        spade_kernel=kernel, zero_init=False, cond="spade")
    assert SR3UNet(config).conv_in.in_channels == 3
    assert locality_ratio(config) > 3


def test_spade_block_uses_label_and_gets_gradients():
    torch.manual_seed(0)
    model = SR3UNet(UNetConfig(cond="spade", **MICRO))
    assert any(isinstance(m, SPADEResBlock) for m in model.decoder.modules())
    assert not any(isinstance(m, SPADEResBlock) for m in model.encoder.modules())  # encoder is plain
    x_t, alpha_bar, label = inputs(2, 16, 16)
    model(x_t, alpha_bar, label).pow(2).mean().backward()
    spade_grads = [p.grad for n, p in model.named_parameters() if "to_gamma_beta" in n]
    assert spade_grads and all(g is not None and g.abs().sum() > 0 for g in spade_grads)


def test_shared_label_encoders_are_computed_once_per_resolution():
    model = SR3UNet(UNetConfig(cond="spade", spade_shared=True, **MICRO))
    calls = []
    for enc in model.label_encoders.values():
        enc.register_forward_hook(lambda m, i, o: calls.append(o.shape[-2:]))
    x_t, alpha_bar, label = inputs(1, 16, 16)
    model(x_t, alpha_bar, label)
    n_spade = sum(isinstance(m, SPADE) for m in model.modules())
    assert n_spade > len(calls) and sorted(calls) == sorted(set(calls)) and len(calls) == 2  # two levels


# --- determinism and config round trip ------------------------------------------------------------

@pytest.mark.parametrize("cond", MODES)
def test_same_seed_same_output(cond):
    def build_and_run(seed):
        torch.manual_seed(seed)
        model = SR3UNet(UNetConfig(cond=cond, **MICRO)).eval()
        x_t, alpha_bar, label = inputs(2, 16, 16, seed=1)
        with torch.no_grad():
            return model(x_t, alpha_bar, label)
    assert torch.equal(build_and_run(0), build_and_run(0))
    assert not torch.equal(build_and_run(0), build_and_run(1))


@pytest.mark.parametrize("cond", MODES)
def test_config_json_round_trip_rebuilds_identical_model(cond, tmp_path):
    config = UNetConfig.preset("tiny", cond=cond, zero_init=False)
    loaded = UNetConfig.load(config.save(tmp_path / "unet.json"))
    assert loaded == config and UNetConfig.from_json(config.to_json()) == config
    assert UNetConfig.from_dict(config.to_dict()) == config
    torch.manual_seed(0)
    model = SR3UNet(config).eval()
    rebuilt = SR3UNet(loaded).eval()
    a, b = model.state_dict(), rebuilt.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    rebuilt.load_state_dict(a)
    x_t, alpha_bar, label = inputs(1, 32, 48)
    with torch.no_grad():
        assert torch.equal(model(x_t, alpha_bar, label), rebuilt(x_t, alpha_bar, label))


def test_config_validation():
    with pytest.raises(ValueError, match="unknown UNetConfig fields"):
        UNetConfig.from_dict({"base_channel": 32})
    with pytest.raises(ValueError, match="cond"):
        UNetConfig(cond="film")
    with pytest.raises(ValueError, match="norm_groups"):
        UNetConfig(base_channels=24, norm_groups=32)
    with pytest.raises(ValueError, match="preset"):
        UNetConfig.preset("huge")


def test_presets_parameter_counts():
    tiny = count_parameters(SR3UNet(UNetConfig.preset("tiny")))
    assert 2e6 < tiny < 6e6
    assert UNetConfig.preset("sr3").num_res_blocks == 3


# --- building blocks ------------------------------------------------------------------------------

def test_resblock_zero_init_is_scaled_skip_and_resamples():
    x, emb = torch.randn(2, 8, 8, 12), torch.randn(2, 16)
    block = ResBlock(8, 8, 16, groups=4, resample="up")
    assert torch.allclose(block(x, emb), F.interpolate(x, scale_factor=2.0) / math.sqrt(2), atol=1e-6)
    assert ResBlock(8, 16, 16, groups=4, resample="down")(x, emb).shape == (2, 16, 4, 6)


# --- bf16 autocast --------------------------------------------------------------------------------

@pytest.mark.parametrize("cond", MODES)
def test_bf16_autocast_close_to_fp32(cond):
    torch.manual_seed(0)
    model = SR3UNet(UNetConfig.preset("tiny", cond=cond, zero_init=False)).eval()
    x_t, alpha_bar, label = inputs(2, 32, 48)
    with torch.no_grad():
        ref = model(x_t, alpha_bar, label)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x_t, alpha_bar, label)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert ((low - ref).norm() / ref.norm()).item() < 0.05
    assert np.corrcoef(low.flatten().numpy(), ref.flatten().numpy())[0, 1] > 0.99


def test_configs_written_before_the_attn_side_rename_still_load():
    "UNetConfig.image_size (an int, the smaller side) became attn_side; (H, W) is image_size everywhere else."
    old = {**UNetConfig(**MICRO).to_dict()}
    old["image_size"] = old.pop("attn_side")
    assert UNetConfig.from_dict(old) == UNetConfig(**MICRO)
    with pytest.raises(ValueError, match="unknown UNetConfig fields"):
        UNetConfig.from_dict({**old, "attn_side": 16})  # both names at once: the old one is not silently dropped


@pytest.mark.parametrize("levels", [None, (0,), (1,), (0, 1)])
def test_spade_at_chosen_levels_uses_every_parameter(levels):
    "SPADE only where asked (the thesis's 'selected' decoder blocks); every parameter still gets a gradient (DDP-safe)."
    from surgdiff.layers import SPADEResBlock
    cfg = UNetConfig(**{**MICRO, "cond": "both", "zero_init": False, "spade_levels": levels, "spade_shared": True})
    model = SR3UNet(cfg)
    spade_blocks = [s for s in [*model.middle, *model.decoder] if isinstance(s.block, SPADEResBlock)]
    everywhere = [*model.middle, *model.decoder]
    assert (len(spade_blocks) == len(everywhere)) == (levels is None or levels == (0, 1))
    out = model(torch.randn(2, 3, 16, 16), torch.tensor([0.3, 0.7]), torch.randint(0, 36, (2, 16, 16)))
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="spade_levels"):
        UNetConfig(**{**MICRO, "cond": "both", "spade_levels": (5,)})
