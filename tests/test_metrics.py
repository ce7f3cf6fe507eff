"""Tests of surgdiff.metrics: PSNR/SSIM, the hash-checked Inception features, FID, KID and diversity."""
import dataclasses
import math
import shutil

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import surgdiff.segment
from surgdiff.data import synthetic_scene
from surgdiff.metrics import (DEFAULT_WEIGHTS_SHA1, PROTOCOL, FIDProtocol, InceptionFeatures, check_sha1,
                              default_weights_path, diversity, feature_stats, fid_from_features, fid_kid,
                              file_sha1, frechet_distance, image_similarity, kid_from_features,
                              label_consistency, psnr, ssim, to_uint8)
from surgdiff.segment import as_image_tensor, gaussian_blur

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def real8():
    return np.stack([synthetic_scene(s, (64, 64))[0] for s in range(8)])


@pytest.fixture(scope="module")
def inception():
    return InceptionFeatures(progress=False)


@pytest.fixture(scope="module")
def feats8(inception, real8):
    return inception.extract(real8, batch_size=8)


def random_cov(rng, d, scale=1.0):
    a = rng.normal(size=(d, d)) * scale
    return a @ a.T / d + 0.1 * np.eye(d)


# ---------------------------------------------------------------- quantisation

def test_to_uint8_round_trip_and_rounding():
    img = synthetic_scene(3, (16, 24))[0]
    x = as_image_tensor(img[None])
    assert np.array_equal(to_uint8(x), img[None])
    assert np.array_equal(to_uint8(img), img[None])                      # single HxWx3 image
    v = torch.tensor([-1.01, -1 + 0.4 / 127.5, -1 + 0.6 / 127.5, 0, 1 - 0.6 / 127.5, 1.01]).reshape(2, 3, 1, 1)
    assert to_uint8(v).ravel().tolist() == [0, 0, 1, 128, 254, 255]     # nearest level; 127.5 (x=0) rounds up


@pytest.mark.parametrize("bad, words", [(np.zeros((2, 3, 8, 8)) + 200.0, "[-1,1]"),
                                        (np.zeros((2, 8, 8, 4), np.uint8), "RGB"),
                                        (np.zeros((2, 4, 8, 8), np.float32), "(B,3,H,W)"),
                                        (np.zeros((8, 8), np.uint8), "shape")])
def test_to_uint8_refuses_bad_input(bad, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        to_uint8(bad)


# ---------------------------------------------------------------- PSNR / SSIM

def test_psnr_ssim_match_skimage(real8):
    fake = to_uint8(gaussian_blur(as_image_tensor(real8[:3]), 1.2))
    res = image_similarity(fake, real8[:3])
    want_p = [peak_signal_noise_ratio(r, f, data_range=255) for f, r in zip(fake, real8[:3])]
    want_s = [structural_similarity(r, f, data_range=255, channel_axis=2) for f, r in zip(fake, real8[:3])]
    assert np.allclose(res["psnr"], want_p, rtol=1e-12) and np.allclose(res["ssim"], want_s, rtol=1e-12)
    assert math.isclose(res["psnr_mean"], np.mean(want_p)) and math.isclose(res["ssim_mean"], np.mean(want_s))
    assert res["n"] == 3 and "data_range=255" in res["protocol"]
    # float input in [-1,1] is quantised to the same uint8 images first
    assert np.allclose(psnr(as_image_tensor(fake), real8[:3]), want_p)
    g = ssim(fake, real8[:3], gaussian_weights=True)
    want_g = [structural_similarity(r, f, data_range=255, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False) for f, r in zip(fake, real8[:3])]
    assert np.allclose(g, want_g)


def test_psnr_of_identical_images_is_inf_or_cap(real8):
    with np.errstate(all="raise"):           # the divide-by-zero inside skimage is silenced, not raised
        p = psnr(real8[:2], real8[:2])
    assert np.isinf(p).all() and (p > 0).all()
    assert (psnr(real8[:2], real8[:2], cap=80.0) == 80.0).all()
    assert image_similarity(real8[:2], real8[:2])["psnr_mean"] == math.inf
    noisy = real8[:2].astype(int) + 1
    assert np.isfinite(psnr(np.clip(noisy, 0, 255).astype(np.uint8), real8[:2])).all()


def test_psnr_ssim_refuse_mismatched_shapes(real8):
    with pytest.raises(ValueError, match="same count and size"):
        psnr(real8[:2], real8[:3])


# ---------------------------------------------------------------- Fréchet distance

@pytest.mark.parametrize("d", [3, 12])
def test_frechet_distance_matches_direct_scipy(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = random_cov(rng, d), random_cov(rng, d, 2.0)
    direct = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert math.isclose(frechet_distance(mu1, s1, mu2, s2), direct, rel_tol=1e-9)


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(1)
    v1, v2 = rng.uniform(0.05, 3, 10), rng.uniform(0.05, 3, 10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    closed = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert math.isclose(frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)), closed, rel_tol=1e-10)


def test_frechet_distance_shape_errors():
    with pytest.raises(ValueError, match="sigma1"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))


@pytest.mark.parametrize("n1, n2", [(10, 17), (90, 120)])
def test_fid_svd_shortcut_equals_sqrtm(n1, n2):
    rng = np.random.default_rng(n1)
    fa = rng.normal(size=(n1, 32)) @ rng.normal(size=(32, 32)) * 0.5
    fb = rng.normal(size=(n2, 32)) * 1.3 + 0.1
    ref = frechet_distance(*feature_stats(fa), *feature_stats(fb))
    assert math.isclose(fid_from_features(fa, fb, method="svd"), ref, rel_tol=1e-7)
    assert math.isclose(fid_from_features(fa, fb, method="sqrtm"), ref, rel_tol=1e-12)
    assert math.isclose(fid_from_features(fa, fb), ref, rel_tol=1e-7)


def test_fid_mean_shift_adds_its_squared_norm():
    rng = np.random.default_rng(5)
    fa = rng.normal(size=(40, 64))
    delta = rng.normal(size=64)
    assert math.isclose(fid_from_features(fa, fa + delta), delta @ delta, rel_tol=1e-8)
    assert fid_from_features(fa, fa + 2 * delta) > fid_from_features(fa, fa + delta)


def test_fid_refuses_bad_features():
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="feature sizes differ"):
        fid_from_features(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="method"):
        fid_from_features(np.ones((3, 4)), np.ones((3, 4)), method="eig")


# ---------------------------------------------------------------- KID

def test_kid_matches_formula_written_out():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)) + 0.3
    k = lambda a, b: (a @ b / 4 + 1) ** 3
    want = (sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(6) for j in range(6) if i != j) / 30
            - 2 * sum(k(x[i], y[j]) for i in range(6) for j in range(6)) / 36)
    r = kid_from_features(x, y)
    assert math.isclose(r["kid"], want, rel_tol=1e-10) and r["kid_std"] == 0 and r["subset_size"] == 6


def test_kid_near_zero_same_distribution_positive_otherwise():
    rng = np.random.default_rng(3)
    same = kid_from_features(rng.normal(size=(300, 32)), rng.normal(size=(300, 32)), subsets=40, subset_size=100)
    diff = kid_from_features(rng.normal(size=(300, 32)), rng.normal(size=(300, 32)) + 0.3, subsets=40, subset_size=100)
    assert same["subsets"] == 40 and same["subset_size"] == 100 and same["kid_std"] > 0
    assert abs(same["kid"]) < 4 * same["kid_std"] / math.sqrt(40)
    assert diff["kid"] > 10 * abs(same["kid"]) and diff["kid"] > 4 * diff["kid_std"] / math.sqrt(40)
    again = kid_from_features(rng.normal(size=(50, 8)), rng.normal(size=(60, 8)), subsets=5, subset_size=20, seed=7)
    assert again["subset_size"] == 20


def test_kid_is_seeded():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(40, 8))
    assert kid_from_features(a, b, 10, 20, seed=1) == kid_from_features(a, b, 10, 20, seed=1)
    assert kid_from_features(a, b, 10, 20, seed=1) != kid_from_features(a, b, 10, 20, seed=2)


# ---------------------------------------------------------------- protocol and weights

def test_protocol_is_frozen_and_round_trips():
    assert FIDProtocol.from_json(PROTOCOL.to_json()) == PROTOCOL
    assert PROTOCOL.size == 299 and PROTOCOL.feature_dim == 2048 and PROTOCOL.input_range == (-1.0, 0.9921875)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROTOCOL.size = 128
    with pytest.raises(ValueError, match="resize"):
        FIDProtocol(resize="pil-bicubic")
    with pytest.raises(ValueError, match="unknown FIDProtocol fields"):
        FIDProtocol.from_dict({"sizee": 299})
    text = PROTOCOL.describe()
    assert "299x299" in text and "bilinear" in text and "uint8" in text and DEFAULT_WEIGHTS_SHA1[:12] in text


def test_default_weights_hash_and_tampered_copy_refused(tmp_path):
    path = default_weights_path()
    assert path.name == "default_1.pt" and file_sha1(path) == DEFAULT_WEIGHTS_SHA1
    assert check_sha1(path, DEFAULT_WEIGHTS_SHA1.upper()) == DEFAULT_WEIGHTS_SHA1
    bad = tmp_path / "default_1.pt"
    shutil.copyfile(path, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the expected"):
        InceptionFeatures(bad, sha1=DEFAULT_WEIGHTS_SHA1)
    with pytest.raises(ValueError, match="verify=False"):
        InceptionFeatures(bad)                                  # a user file needs a hash or an explicit opt-out


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*is deprecated:DeprecationWarning")
def test_user_weights_with_hash_and_unverified(tmp_path):
    net = torch.jit.script(_TinyNet())
    p = tmp_path / "tiny.pt"
    net.save(str(p))
    ext = InceptionFeatures(p, sha1=file_sha1(p), progress=False)
    assert ext.protocol.weights_sha1 == file_sha1(p) and "tiny.pt" in ext.protocol.describe()
    f = ext.extract(np.zeros((3, 8, 8, 3), np.uint8) + 128)
    assert f.shape == (3, 2048)
    unverified = InceptionFeatures(p, verify=False, progress=False)
    assert "unverified" in unverified.protocol.feature_net


class _TinyNet(torch.nn.Module):
    "A stand-in 'feature network': (B,3,299,299) -> (B,2048,1,1), to test the user-weights path cheaply."
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).expand(-1, 2048, 1, 1)


# ---------------------------------------------------------------- Inception features (8 images, 64x64)

def test_inception_features_shape_determinism_batch_size(inception, real8, feats8):
    assert feats8.shape == (8, 2048) and feats8.dtype == np.float64 and (feats8 >= 0).all()
    assert np.array_equal(inception.extract(real8, batch_size=8), feats8)
    assert np.allclose(inception.extract(real8, batch_size=3), feats8, rtol=1e-4, atol=1e-5)
    assert np.allclose(inception.extract(as_image_tensor(real8[:2])), feats8[:2], atol=1e-5)
    assert np.linalg.norm(feats8[0] - feats8[1]) > 1.0


def test_preprocess_is_the_stated_protocol(inception, real8):
    x = inception.preprocess(real8[:2])
    assert x.shape == (2, 3, 299, 299)
    u = torch.from_numpy(real8[:2]).permute(0, 3, 1, 2).float()
    want = torch.nn.functional.interpolate(u, size=(299, 299), mode="bilinear", align_corners=False) / 128 - 1
    assert torch.allclose(x, want, atol=1e-6)
    assert x.min() >= -1 and x.max() <= 0.9921875 + 1e-6


def test_fid_of_same_features_is_zero_and_grows_with_blur(inception, real8, feats8):
    assert abs(fid_from_features(feats8, feats8)) < 1e-6
    blur1 = inception.extract(gaussian_blur(as_image_tensor(real8), 1.0))
    blur3 = inception.extract(gaussian_blur(as_image_tensor(real8), 3.0))
    f1, f3 = fid_from_features(feats8, blur1), fid_from_features(feats8, blur3)
    assert 1.0 < f1 < f3
    k1, k3 = kid_from_features(feats8, blur1)["kid"], kid_from_features(feats8, blur3)["kid"]
    assert 0 < k1 < k3


def test_fid_kid_returns_protocol_and_counts(inception, real8, feats8):
    res = fid_kid(real8[:4], real8[4:], extractor=inception, progress=False, return_features=True)
    assert res["n_real"] == 4 and res["n_fake"] == 4 and res["protocol"] == PROTOCOL.describe()
    assert np.allclose(res["features_real"], feats8[:4], rtol=1e-4, atol=1e-5)
    assert math.isclose(res["fid"], fid_from_features(res["features_real"], res["features_fake"]))
    assert res["fid"] > 0 and res["kid_subset_size"] == 4
    with pytest.raises(ValueError, match="at least 2 images"):
        fid_kid(real8[:1], real8[4:], extractor=inception, progress=False)


# ---------------------------------------------------------------- diversity and label consistency

def test_diversity_zero_for_identical_positive_otherwise(inception, real8):
    x = as_image_tensor(real8[:2])
    same = x[:, None].expand(2, 3, 3, 64, 64)
    g = torch.Generator().manual_seed(0)
    varied = (same + 0.1 * torch.randn(same.shape, generator=g)).clamp(-1, 1)
    d0, d1 = diversity(same, inception), diversity(varied, inception)
    assert d0["pixel_l1"] == 0 and abs(d0["feature_cosine"]) < 1e-9 and d0["feature_l2"] < 1e-9
    assert d1["pixel_l1"] > 0.01 and d1["feature_cosine"] > 0 and d1["feature_l2"] > 0
    assert d1["n_labels"] == 2 and d1["n_pairs"] == 6 and d1["protocol"] == PROTOCOL.describe()
    a = to_uint8(varied[0])
    want = np.mean([np.abs(a[i] / 255 - a[j] / 255).mean() for i in range(3) for j in range(i + 1, 3)])
    assert math.isclose(d1["pixel_l1_per_label"][0], want, rel_tol=1e-5)


def test_diversity_lists_and_errors(real8):
    d = diversity([real8[:3], real8[3:5]], features=False)
    assert d["samples_per_label"] == [3, 2] and d["n_pairs"] == 4 and "feature_l2" not in d
    with pytest.raises(ValueError, match=">= 2 samples"):
        diversity([real8[:1]], features=False)
    with pytest.raises(ValueError, match="samples_per_label"):
        diversity(np.zeros((2, 3, 8, 8)), features=False)


def test_label_consistency_is_the_segment_one():
    assert label_consistency is surgdiff.segment.label_consistency
