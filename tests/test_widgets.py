"Drive the explorers of nbs/07_explore.ipynb headless: set controls as a user would, check what they show."
import numpy as np
import pytest
import torch

from surgdiff.data import add_instrument, remove_classes, synthetic_scene, transform_instrument
from surgdiff.diffusion import q_sample
from surgdiff.model import load_pretrained
from surgdiff.widgets import (STATIC_NOTE, decode_png, denoising_explorer, label_editor, noising_explorer, picture,
                              step_sweep, widgets_supported)


@pytest.fixture(scope="module")
def demo():
    torch.set_num_threads(1)
    return load_pretrained("demo")


def shown(widget, scale=3):
    return decode_png(widget.value, scale)


def test_noising_slider_shows_q_sample_at_t(demo):
    ex = noising_explorer(model=demo, fallback=False, noise_seed=3)
    eps = ex.eps.clone()
    seen = set()
    for t in (1, 250, 1000, 1999, 0):
        before = ex.updates
        ex.t_slider.value = t
        assert ex.updates == before + 1                      # the callback ran once per move
        ab = ex.schedule.alpha_bar[t:t + 1].float()
        assert (shown(ex.xt_image) == picture(q_sample(ex.x0, ab, eps))).all()
        seen.add(ex.xt_image.value)
        assert f"t = {t} " in ex.status.value
    assert len(seen) == 5                                    # every t gave a different picture
    assert torch.equal(ex.eps, eps)                          # the noise stayed put while t moved
    # at t = 0 the model's x̂0 is close to the clean image; at T-1 the x_t histogram is N(0, 1)
    ex.t_slider.value = 0
    assert np.abs(shown(ex.x0_pred_image).astype(int) - picture(ex.x0).astype(int)).mean() < 8
    ex.t_slider.value = 1999
    assert abs(float(ex.x_t.std()) - 1) < 0.05


def test_noising_schedule_and_seed_controls(demo):
    ex = noising_explorer(model=None, t=1000, fallback=False)
    assert ex.x0_pred_image.value == b"" and ex.show_x0_pred.disabled
    plot = ex.plot_image.value
    ex.schedule_picker.value = "cosine"
    assert ex.t_slider.max == 999 and ex.t_slider.value == 500 and ex.plot_image.value != plot
    ab = ex.schedule.alpha_bar[500:501].float()
    assert (shown(ex.xt_image) == picture(q_sample(ex.x0, ab, ex.eps))).all()
    old = ex.xt_image.value
    ex.noise_seed.value = 7
    assert torch.equal(ex.eps, torch.randn(ex.x0.shape, generator=torch.Generator().manual_seed(7)))
    assert ex.xt_image.value != old


def test_noising_rejects_bad_input():
    with pytest.raises(ValueError, match="schedule"):
        noising_explorer(schedule="linear-5", model=None, fallback=False)
    with pytest.raises(ValueError, match="uint8"):
        noising_explorer(image=np.zeros((8, 8), np.float32), model=None, fallback=False)


def test_denoising_run_scrub_and_cache(demo):
    ex = denoising_explorer(demo, steps=6, guidance=2.0, fallback=False)
    assert ex.current is None and ex.scrubber.disabled
    ex.run_button.click()
    assert ex.runs == 1 and ex.progress.value == 6 and ex.progress.bar_style == "success"
    assert ex.scrubber.max == 5 and ex.scrubber.value == 5 and len(ex.trajectory) == 6
    pictures = set()
    for i in range(6):
        ex.scrubber.value = i
        assert ex.xt_image.value == ex.current["x_t"][i] and ex.x0_image.value == ex.current["x0"][i]
        assert (shown(ex.xt_image) == picture(ex.trajectory.x_t[i])).all()
        pictures.add(ex.x0_image.value)
    assert len(pictures) == 6
    first = ex.result_image.value
    ex.seed.value = 1
    ex.run()
    assert ex.runs == 2 and ex.result_image.value != first
    ex.seed.value = 0
    ex.run()
    assert ex.runs == 2 and ex.result_image.value == first         # cached: no new sampling
    # the same settings in a fresh explorer give the same picture (determinism under the seed)
    again = denoising_explorer(demo, steps=6, guidance=2.0, run=True, fallback=False)
    assert again.result_image.value == first


def test_denoising_controls(demo):
    ex = denoising_explorer(demo, steps=4, fallback=False)
    ex.steps_preset.value = "10"
    assert ex.steps.value == 10
    ex.sampler.value = "ddpm"
    assert ex.eta.disabled and ex.settings()[2] == 0.0
    ex.sampler.value = "ddim"
    ex.eta.value = 1.0
    ex.steps.value = 3
    ex.run()
    assert ex.runs == 1 and ex.progress.value == 3
    shown_before = ex.result_image.value
    ex.steps.max = 5000
    ex.steps.value = 3000                         # more steps than linear-2000 has
    assert ex.run() == {} and "cannot run" in ex.status.value and ex.progress.bar_style == "danger"
    assert ex.result_image.value == shown_before and ex.runs == 1    # what was shown is kept


def test_step_sweep_one_start_noise(demo):
    sw = step_sweep(demo, steps=(4, 2), progress=False, fallback=False)
    assert list(sw.images) == [4, 2] and all(sw.images[n].shape == (64, 112, 3) for n in (4, 2))
    assert all(0 <= sw.miou[n] <= 1 for n in (4, 2)) and all(sw.seconds[n] > 0 for n in (4, 2))
    assert not np.array_equal(sw.images[4], sw.images[2])
    assert sw.figure_image.value[:4] == b"\x89PNG" and "<td>4</td>" in sw.table.value
    again = step_sweep(demo, steps=(2,), consistency=False, progress=False, fallback=False)
    assert np.array_equal(again.images[2], sw.images[2])              # same seed, same start noise, same panel
    with pytest.raises(ValueError, match="steps"):
        step_sweep(demo, steps=(0,), fallback=False)


def test_label_edits():
    _, lab = synthetic_scene(2_000_003, (64, 112))
    tools = [c for c in np.unique(lab) if c >= 7]
    assert tools, "scene 2_000_003 has instruments"
    gone = remove_classes(lab, [tools[0]])
    assert not (gone == tools[0]).any()
    keep = lab != tools[0]
    assert (gone[keep] == lab[keep]).all()
    rotated = transform_instrument(lab, tools[0], angle=90)
    assert (rotated == tools[0]).sum() > 0 and not (rotated == lab).all()
    with pytest.raises(ValueError, match="not in the label map"):
        transform_instrument(lab, 30)
    with pytest.raises(ValueError, match="scale"):
        transform_instrument(lab, tools[0], scale=0)
    added = add_instrument(gone, 16, angle=0)
    assert (added == 16).sum() > 10 and (added == 23).sum() > 10      # Secondary Knife and its handle


def test_label_editor_changes_only_the_edited_region(demo):
    ed = label_editor(demo, steps=8, fallback=False)
    ed.instrument.value = ed.instrument.options[1][1]
    before = ed.edited_label_image.value
    ed.dx.value = -10
    assert ed.edited_label_image.value != before and (ed.label != ed.base).any()
    ed.generate()
    assert ed.progress.value == 16 and ed.change_inside > 3 * ed.change_outside
    calls = ed.progress.value
    ed.generate()                                                      # nothing changed: both from the cache
    assert ed.progress.value == 0 and ed.generations == 2
    ed.style_seed.value = 5
    ed.generate()
    assert ed.progress.value == 16 and not np.array_equal(ed.original, ed._cache[("x", ed.base.tobytes(), 0, 1.5)])
    assert calls == 16


def test_label_editor_on_a_real_image_through_inversion(demo):
    img, lab = synthetic_scene(2_000_005, (64, 112))
    ed = label_editor(demo, label=lab, image=img, invert_steps=25, steps=25, fallback=False)
    orig, same = ed.generate()                                         # no edit yet: a reconstruction
    assert orig is img
    err_inverted = np.abs(same.astype(int) - img.astype(int)).mean()
    fresh = label_editor(demo, label=lab, steps=10, style_seed=0, clip=None, fallback=False)
    _, from_noise = fresh.generate()
    err_random = np.abs(from_noise.astype(int) - img.astype(int)).mean()
    assert err_inverted < 0.5 * err_random, (err_inverted, err_random)
    with pytest.raises(ValueError, match="uint8"):
        label_editor(demo, label=lab, image=img[:32], fallback=False)


def test_console_fallback_prints_one_line(demo, capsys):
    assert not widgets_supported()
    noising_explorer(model=None)
    out = capsys.readouterr().out
    assert out.strip() == STATIC_NOTE
    fig = noising_explorer(model=None, fallback=False).static_figure()
    assert len(fig.axes) == 5


def test_static_figure_through_pyplot_outside_jupyter(monkeypatch):
    "The console fallback's pyplot path (an interactive backend) used to raise NameError: plt was never imported."
    import matplotlib.pyplot as plt
    import surgdiff.widgets as widgets
    shown_figures = []
    monkeypatch.setattr(widgets.matplotlib, "get_backend", lambda: "TkAgg")   # as in a terminal with a display
    monkeypatch.setattr(widgets.plt, "show", lambda: shown_figures.append(plt.gcf()))
    noising_explorer(model=None)
    assert len(shown_figures) == 1 and len(shown_figures[0].axes) == 5
    plt.close("all")


def test_denoising_explorer_lifts_with_the_stage(demo):
    "The demo's explorer lifts its result with demo-sr; aug and stage steps re-lift without sampling the base again."
    from surgdiff.cascade import load_cascade
    ex = denoising_explorer(demo, steps=4, guidance=1.5, fallback=False)
    assert ex.cascade is not None and ex.label.shape == (256, 448)
    ex.run()
    assert ex.runs == 1 and decode_png(ex.lifted_image.value).shape == (256, 448, 3)
    first = ex.lifted_image.value
    ex.aug.value = 0.5
    ex.stage_steps.value = 2
    ex.run()
    assert ex.runs == 1 and ex.lifted_image.value != first and "aug ᾱ 0.5, 2 steps" in ex.status.value
    # what the explorer shows is what the cascade samples for the same seed and settings
    with torch.no_grad():
        y = load_cascade().sample(torch.from_numpy(ex.label.astype(np.int64))[None], generator=torch.Generator().manual_seed(0),
                                  stage_steps=2, aug_alpha_bar=0.5, progress=False, **dict(zip(
                                      ("sampler", "steps", "eta", "spacing", "guidance"), ex.settings()[:5])), clip=ex.clip)
    assert (picture(y) == ex.lifted["image"]).all()
    assert denoising_explorer(demo, steps=4, stage=None, fallback=False).cascade is None
