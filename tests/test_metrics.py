"""Metrics against hand-computed cases and a slow, obviously-correct loop-based reference."""
import math
import numpy as np
import pytest
import torch

from avsl_nbdev.metrics import (gt_map, minmax, binarize, ciou, ap50_auc, map_mse, upsample, evaluate_maps,
                                size_bin, average_precision, false_positives, LocalizationMeter, trivial_maps)


# ---- slow references: plain Python loops over pixels, written from the definitions ----
def ref_minmax(m):
    lo, hi = min(m.flat), max(m.flat)
    return np.ones_like(m) if hi == lo else (m - lo) / (hi - lo)

def ref_binarize(n, rule, thr=0.5):
    if rule == 'absolute': return n >= thr
    v = sorted(n.flat)[n.size // 2]
    return n >= v

def ref_ciou(p, g):
    inter = sum(float(p[i, j]) * g[i, j] for i in range(g.shape[0]) for j in range(g.shape[1]))
    gsum = sum(g.flat)
    extra = sum(float(p[i, j]) for i in range(g.shape[0]) for j in range(g.shape[1]) if g[i, j] == 0)
    return math.nan if gsum == 0 else inter / (gsum + extra)

def ref_auc(cs):
    xs = [i / 20 for i in range(21)]
    ys = [sum(c >= x for c in cs) / len(cs) for x in xs]
    return sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(20))


def test_consensus_weights_hand_computed():
    # three annotators on a 6 x 6 frame; counts per pixel: 0, 1, 2 or 3 -> weights 0, 0.5, 1, 1
    ann = torch.tensor([[0, 0, 3, 3], [1, 1, 4, 4], [2, 2, 6, 6]])
    g = gt_map(ann, 6, 6, consensus=True)
    expect = np.zeros((6, 6))
    for x1, y1, x2, y2 in ann.tolist():
        expect[y1:y2, x1:x2] += 1
    assert np.array_equal(g.numpy(), np.minimum(expect / 2, 1))
    assert set(np.unique(g.numpy())) == {0.0, 0.5, 1.0}
    # cIoU with consensus weights: predict exactly the 2-annotator-or-more area
    pred = torch.from_numpy(expect >= 2)[None]
    assert ciou(pred, g[None]).item() == pytest.approx(ref_ciou(expect >= 2, np.minimum(expect / 2, 1)))


def test_flickr_scaling_and_border_boxes():
    # a 256-px annotation covering the right half; on a 224 frame it is 112 columns wide
    g = gt_map([[128, 0, 256, 256]], 224, 224, scale=224 / 256)
    assert g[:, 112:].all() and not g[:, :112].any()
    # boxes touching or crossing the border are clipped by the frame
    g = gt_map([[-5, -5, 2, 2]], 4, 4)
    assert g.sum() == 4 and g[:2, :2].all()
    g = gt_map([[3, 3, 10, 10]], 4, 4)
    assert g.sum() == 1 and g[3, 3] == 1


def test_ties_at_the_median_are_positive():
    n = torch.tensor([[[0., 0., 0.], [0., 0., 0.], [0., 0.5, 1.]]])   # sorted[4] = 0 -> everything positive
    assert binarize(n, 'median').all()
    n = torch.tensor([[[0., 0.25], [0.5, 1.]]])                         # sorted[2] = 0.5
    assert binarize(n, 'median').tolist() == [[[False, False], [True, True]]]


def test_constant_maps_mean_everywhere():
    gt = torch.zeros(1, 8, 8); gt[0, :4] = 1                            # half the frame
    for c in (0.0, 3.0, -2.0):
        norm = minmax(torch.full((1, 8, 8), c))
        assert norm.eq(1).all()
        assert ciou(binarize(norm, 'absolute'), gt).item() == pytest.approx(0.5)
        assert ciou(binarize(norm, 'median'), gt).item() == pytest.approx(0.5)


def test_tiny_box_and_the_median_ceiling():
    S = 32
    gt = gt_map([[10, 10, 12, 12]], S, S)[None]                         # 4 pixels
    perfect = gt.clone()
    assert ciou(binarize(minmax(perfect), 'absolute'), gt).item() == 1.0
    # median rule: ties make every pixel positive -> cIoU = 4 / 1024
    assert ciou(binarize(minmax(perfect), 'median'), gt).item() == pytest.approx(4 / S ** 2)
    # a perfect *soft* map under the median rule still covers half the frame: cIoU = 2a
    yy, xx = torch.meshgrid(torch.arange(S) + .5, torch.arange(S) + .5, indexing='ij')
    soft = torch.exp(-((xx - 11) ** 2 + (yy - 11) ** 2) / 50)[None]
    assert ciou(binarize(minmax(soft), 'median'), gt).item() == pytest.approx(4 / (S * S / 2), rel=0.01)


def test_ap50_auc_and_mse_hand_computed():
    ap, auc = ap50_auc(torch.tensor([0.0, 0.5, 1.0, math.nan]))
    assert ap == pytest.approx(2 / 3)
    assert auc == pytest.approx(ref_auc([0.0, 0.5, 1.0]))
    assert map_mse(torch.tensor([[[1., 0.], [0.5, 0.]]]), torch.tensor([[[1., 1.], [0., 0.]]])).item() == pytest.approx((1 + 0.25) / 4)


@pytest.mark.parametrize('rule', ['absolute', 'median'])
def test_agrees_with_slow_reference_on_random_inputs(rule):
    g = torch.Generator().manual_seed(0)
    B, h, S = 24, 5, 12
    maps = torch.rand(B, h, h, generator=g)
    maps[0] = 1.0                                                       # a constant map
    boxes = [torch.randint(0, S, (4,), generator=g).tolist() for _ in range(B)]
    gts = torch.stack([gt_map([[min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]) + 1, max(b[1], b[3]) + 1]], S, S,
                              consensus=bool(i % 2)) for i, b in enumerate(boxes)])
    gts[1] = 0                                                          # an empty ground truth
    up = upsample(maps, S)
    fast = ciou(binarize(minmax(up), rule), gts)
    for i in range(B):
        n = ref_minmax(up[i].double().numpy())
        ref = ref_ciou(ref_binarize(n, rule), gts[i].numpy())
        if math.isnan(ref): assert math.isnan(fast[i].item())
        else: assert fast[i].item() == pytest.approx(ref, abs=1e-5)
    valid = [c for c in fast.tolist() if not math.isnan(c)]
    assert ap50_auc(fast)[1] == pytest.approx(ref_auc(valid), abs=1e-6)


def test_meter_equals_one_shot_and_batches_do_not_matter():
    g = torch.Generator().manual_seed(1)
    maps, gt = torch.rand(10, 7, 7, generator=g), torch.zeros(10, 1, 28, 28)
    for i in range(8): gt[i, 0, i:i + 10, 2 * i:2 * i + 8] = 1
    one = evaluate_maps(maps, gt)
    m = LocalizationMeter()
    for s in (slice(0, 3), slice(3, 7), slice(7, 10)): m.update(maps[s], gt[s])
    two = m.compute()
    assert one.keys() == two.keys()
    for k in one:
        assert (math.isnan(one[k]) and math.isnan(two[k])) or one[k] == pytest.approx(two[k])
    assert one['n'] == 8 and one['n_no_source'] == 2


def test_meter_rejects_wrong_shapes():
    with pytest.raises(ValueError, match='maps'):
        LocalizationMeter().update(torch.rand(2, 7), torch.zeros(2, 8, 8))


def test_size_bins_and_false_positives():
    assert size_bin(torch.tensor([31.9 ** 2, 32. ** 2, 100. ** 2, 150. ** 2])).tolist() == [0, 1, 2, 3]
    # AP by a slow reference: precision at each positive, ranked by score (no ties)
    s, y = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5]), torch.tensor([1, 0, 1, 0, 1])
    assert average_precision(s, y) == pytest.approx((1 / 1 + 2 / 3 + 3 / 5) / 3)
    fp = false_positives(torch.tensor([1., 2, 3, 4, 5, 0.5, 4.5]), torch.tensor([1, 1, 1, 1, 1, 0, 0]))
    assert fp['fpr95'] == pytest.approx(0.5)


def test_trivial_baselines():
    gt = torch.zeros(2, 16, 16); gt[0, 4:8, 4:8] = 1; gt[1, :, :] = 1
    r = evaluate_maps(trivial_maps('gt_box', gt), gt)
    assert r['ciou50'] == 1.0 and r['auc'] == 1.0 and r['mse'] == 0.0
    full = evaluate_maps(trivial_maps('full', gt), gt)
    assert full['mean_ciou'] == pytest.approx((16 / 256 + 1) / 2)


def test_score_trivial_on_the_benchmark(tiny_bench):
    from avsl_nbdev.data import AVSLDataset
    from avsl_nbdev.metrics import score_trivial
    res = score_trivial(AVSLDataset(tiny_bench['val']), batch_size=16)
    assert res['gt_box']['ciou50'] == 1.0 and res['gt_box']['fpr95'] == 0.0
    assert res['full']['fpr95'] == 1.0 and res['full']['n'] == res['gt_box']['n'] > 0
