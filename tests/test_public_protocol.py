"Evaluation: the public protocol (EZ-VSL's evaluator) for the median-rule columns, NaN maps never scored."
import math

import numpy as np
import pytest
import torch

from avsl_nbdev.metrics import (AUC_X_PUBLIC, LocalizationMeter, NonFiniteMapError, ap50_auc, binarize, ciou, evaluate_maps,
                                gt_map, minmax, public_ciou, public_gt, upsample)


def test_align_corners_upsampling_hand_computed():
    row = torch.tensor([[[0., 1.], [0., 1.]]])
    np.testing.assert_allclose(upsample(row, 2, 4, align_corners=True)[0, 0].numpy(), [0, 1 / 3, 2 / 3, 1], atol=1e-7)
    np.testing.assert_allclose(upsample(row, 2, 4)[0, 0].numpy(), [0, 0.25, 0.75, 1], atol=1e-7)   # default unchanged


def test_gt_drawn_from_floored_coordinates_on_224_grid():
    # Flickr box [10, 20, 100, 200] on the 256 frame: int(224 * v / 256) = [8, 17, 87, 175] -> 79 x 158 pixels
    g = public_gt([[10, 20, 100, 200]], 256, 256)
    assert g.shape == (224, 224) and g.sum().item() == 79 * 158
    assert g[17, 8] == 1 and g[174, 86] == 1 and g[175, 86] == 0 and g[17, 7] == 0 and g[16, 8] == 0
    assert gt_map([[10, 20, 100, 200]], 224, 224, scale=224 / 256).sum().item() == 78 * 158    # pixel-centre rule differs
    # VGG-SS: int(x * 224) of normalised boxes, given here in pixels of a 320 x 240 frame
    b = np.array([[0.1, 0.2, 0.55, 0.9]])
    want = (b * 224).astype(int)[0]                                           # [22, 44, 123, 201]
    g = public_gt(torch.tensor(b * [320, 240, 320, 240], dtype=torch.float32), 240, 320)
    assert g.sum().item() == (want[2] - want[0]) * (want[3] - want[1])
    # Flickr consensus: one annotator 0.5, two or more 1
    g = public_gt([[0, 0, 4, 4], [2, 0, 6, 4]], 8, 8, consensus=True, size=8)
    assert g[0, 0] == 0.5 and g[0, 3] == 1 and g[7, 7] == 0


def test_constant_map_left_unchanged():
    m = torch.full((1, 3, 3), 5.)
    assert torch.equal(minmax(m), torch.ones(1, 3, 3))                         # default: all ones (unchanged)
    assert torch.equal(minmax(m, constant='keep'), m)                          # EZ-VSL: left as it is
    with pytest.raises(ValueError, match='constant'): minmax(m, constant='zeros')


def test_empty_gt_counts_as_zero_under_public_protocol():
    pred = torch.ones(1, 4, 4, dtype=torch.bool)
    assert math.isnan(ciou(pred, torch.zeros(1, 4, 4)).item())
    assert ciou(pred, torch.zeros(1, 4, 4), empty=0.).item() == 0
    g = torch.zeros(2, 224, 224, dtype=torch.float64); g[0, :112] = 1
    maps = torch.zeros(2, 7, 7); maps[0, 4:] = 1; maps[1, 0, 0] = 1
    c = public_ciou(maps, g)
    assert c.dtype == torch.float64 and c[1].item() == 0.0


def test_auc_float64_thresholds_hand_computed():
    assert AUC_X_PUBLIC.dtype == torch.float64 and AUC_X_PUBLIC[3].item() == 0.05 * 3
    c = torch.tensor([3 / 20], dtype=torch.float64)                            # 0.15 < 0.05 * 3 = 0.15000000000000002
    assert ap50_auc(c, public=True)[1] == pytest.approx(0.125, abs=1e-12)      # counts at 0, 0.05, 0.10: 2 x 0.05 + 0.025
    assert ap50_auc(c.float())[1] == pytest.approx(0.175, abs=1e-6)             # default float32 grid: unchanged
    c = torch.tensor([9 / 20], dtype=torch.float64)                            # 0.45 >= 0.05 * 9 = 0.45 in float64
    assert ap50_auc(c, public=True)[1] == pytest.approx(9 * 0.05 + 0.025, abs=1e-12)
    # matches sklearn-style trapezoid of EZ-VSL's finalize_AUC on a random set
    rng = np.random.default_rng(0); x = rng.uniform(0, 1, 50)
    cious = [np.sum(x >= 0.05 * i) / len(x) for i in range(21)]
    assert ap50_auc(torch.from_numpy(x), public=True)[1] == pytest.approx(np.trapezoid(cious, [0.05 * i for i in range(21)]), abs=1e-12)


def _ezvsl_reference(maps, gt224):
    "EZ-VSL's test.py, transcribed with numpy (normalize_img, median threshold, cal_CIOU)."
    up = torch.nn.functional.interpolate(maps[:, None], size=(224, 224), mode='bilinear', align_corners=True)[:, 0].numpy()
    out = []
    for m, g in zip(up, gt224.numpy()):
        vmin, vmax = m.min(), m.max()
        if not (vmax - vmin) == 0: m = (m - vmin) / (vmax - vmin)
        thr = np.sort(m.flatten())[int(m.shape[0] * m.shape[1] * 0.5)]
        inf = np.zeros((224, 224)); inf[m >= thr] = 1
        out.append(np.sum(inf * g) / (np.sum(g) + np.sum(inf * (g == 0))))
    return np.array(out)


def test_meter_median_columns_follow_public_protocol():
    g = torch.Generator().manual_seed(0)
    B = 12
    maps = torch.rand(B, 7, 7, generator=g) ** 3
    maps[5] = 2.0                                                               # constant map
    boxes = [torch.tensor([[float(8 * i), 10., float(8 * i + 30 + i), 70.]]) for i in range(B - 1)] + [torch.zeros(0, 4)]
    gt = torch.stack([gt_map(b, 128, 128) if len(b) else torch.zeros(128, 128) for b in boxes])
    gt224 = torch.stack([public_gt(b, 128, 128) for b in boxes])
    ref = _ezvsl_reference(maps, gt224)
    ref[-1] = 0.0                                                               # empty ground truth: cIoU 0 (EZ-VSL's 0 / n)
    r = LocalizationMeter().update(maps, gt, boxes=boxes).compute()
    assert r['median_n'] == B
    assert r['median_mean_ciou'] == pytest.approx(ref.mean(), abs=1e-12)
    assert r['median_ciou50'] == pytest.approx(np.mean(ref >= 0.5), abs=1e-12)
    cious = [np.sum(ref >= 0.05 * i) / len(ref) for i in range(21)]
    assert r['median_auc'] == pytest.approx(np.trapezoid(cious, [0.05 * i for i in range(21)]), abs=1e-12)
    # absolute-rule outputs do not depend on the boxes
    r0 = evaluate_maps(maps, gt)
    for k in ('n', 'ciou50', 'auc', 'mean_ciou', 'mse', 'small_ciou50', 'medium_ciou50', 'fpr95'):
        assert r0[k] == r[k] or (math.isnan(r0[k]) and math.isnan(r[k]))


def test_meter_signature_backward_compatible():
    gt = torch.zeros(2, 1, 16, 16); gt[0, 0, :8] = 1
    m = LocalizationMeter()
    m.update(torch.rand(2, 4, 4), gt); m.update(torch.rand(2, 4, 4), gt, torch.ones(2))
    r = m.compute()
    assert {'n', 'ciou50', 'auc', 'mean_ciou', 'mse', 'median_ciou50', 'median_auc', 'fpr95', 'source_ap'} <= set(r)
    assert 'median_mean_ciou' in r and r['median_n'] == 4


def test_nan_map_never_scored():
    gt = torch.zeros(3, 16, 16); gt[:, 4:12, 4:12] = 1
    maps = torch.rand(3, 4, 4); maps[1] = math.nan
    with pytest.raises(NonFiniteMapError, match='1 of 3 maps are non-finite'): evaluate_maps(maps, gt)
    maps[1] = math.inf
    with pytest.raises(FloatingPointError, match='non-finite'): evaluate_maps(maps, gt)


def test_trivial_baselines_use_public_ground_truth():
    "score_trivial's median columns draw the ground truth from the boxes (floored on the 224 grid), as models' do."
    import torch
    from avsl_nbdev.metrics import score_trivial, public_gt, public_ciou, centre_prior
    H = W = 10
    mask = torch.zeros(1, H, W); mask[0, :4, :4] = 1                     # box [0, 0, 4, 4] px: 89.6 -> 89 rows / cols on the 224 grid
    item = lambda i: dict(image=torch.zeros(3, H, W), spec=torch.zeros(1, 4, 4), wave=torch.zeros(1, 8), mask=mask,
                          index=i, kind=0, boxes=torch.tensor([[0., 0., 4., 4.]]), id=str(i))
    r = score_trivial([item(0), item(1)])
    gt = public_gt([[0, 0, 4, 4]], H, W)
    assert int(gt.sum()) == 89 * 89                                     # floor(4 * 22.4) = 89
    want = public_ciou(centre_prior(1, H, W), gt[None]).item()
    assert r['centre']['median_mean_ciou'] == pytest.approx(want, abs=1e-12)
    resized = torch.nn.functional.interpolate(mask[None], size=(224, 224), mode='nearest-exact')[0]
    assert int(resized.sum()) == 90 * 90                                  # the old resized mask rounds to 90
