"""Losses against slow references, gradients, the trainer's promises (learning, exact resume, atomic checkpoints)."""
import math
import pytest
import torch
import torch.nn.functional as F

from avsl_nbdev.core import ConfigError
from avsl_nbdev.contrastive import (similarity, loc_map, ezvsl_loss, slavc_loss, box_loss, ModelConfig, build_model)
from avsl_nbdev.data import AVSLDataset, collate_av
from avsl_nbdev.encoders import AVEncoder, audio_names
from avsl_nbdev.train import TrainConfig, fit, evaluate, labeled_mask
from avsl_nbdev.core import atomic_save


def _norm(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_similarity_and_map_by_loops():
    v, a = _norm(3, 4, 2, 2), _norm(3, 4, seed=1)
    S = similarity(v, a, 0.5)
    for n in range(3):
        for m in range(3):
            for i in range(2):
                for j in range(2):
                    assert S[n, m, i, j].item() == pytest.approx((v[n, :, i, j] @ a[m]).item() / 0.5, abs=1e-6)
    assert torch.allclose(loc_map(v, a, 0.5), torch.stack([S[i, i] for i in range(3)]))


def test_similarities_stay_fp32_under_bf16_autocast():
    "Under bf16 autocast the logits cos / tau are computed in fp32 (bf16 would round them in steps of ~0.13 at tau = 0.03)."
    v, a = _norm(3, 8, 2, 2, seed=1), _norm(3, 8, seed=2)
    ref = torch.einsum('nchw,mc->nmhw', v.double(), a.double()) / 0.03
    with torch.autocast('cpu', dtype=torch.bfloat16):
        s, m = similarity(v, a, 0.03), loc_map(v, a, 0.03)
        plain = torch.einsum('nchw,mc->nmhw', v, a) / 0.03         # what the functions computed before
    assert s.dtype == m.dtype == torch.float32 and plain.dtype == torch.bfloat16
    assert (s.double() - ref).abs().max() < 1e-4 < (plain.double() - ref).abs().max()
    assert torch.allclose(m, torch.diagonal(s, dim1=0, dim2=1).permute(2, 0, 1))


def test_ezvsl_loss_by_loops():
    v, a, tau = _norm(4, 6, 3, 3, seed=2), _norm(4, 6, seed=3), 0.1
    logit = [[max((v[n, :, i, j] @ a[m]).item() for i in range(3) for j in range(3)) / tau for m in range(4)] for n in range(4)]
    ce = lambda rows: sum(-rows[i][i] + math.log(sum(math.exp(x) for x in rows[i])) for i in range(4)) / 4
    ref = ce(logit) + ce([list(c) for c in zip(*logit)])
    assert ezvsl_loss(v, a, tau).item() == pytest.approx(ref, rel=1e-5)


def test_slavc_loss_by_loops():
    B, D, h, w, tau = 3, 5, 2, 3, 0.2
    v1, v2, v1m, v2m = (_norm(B, D, h, w, seed=s) for s in range(4))
    a1, a2, a1m, a2m = (_norm(B, D, seed=s) for s in range(4, 8))
    dot = lambda v, n, i, j, a, m: (v[n, :, i, j] @ a[m]).item() / tau
    def logp(va, vb, aa, ab, n, m):
        tot = 0.0
        for i in range(h):
            for j in range(w):
                p1 = math.exp(dot(va, n, i, j, aa, m)) / sum(math.exp(dot(va, n, i, j, aa, k)) for k in range(B))
                p2 = math.exp(dot(vb, n, i, j, ab, m)) / sum(math.exp(dot(vb, n, y, x, ab, m)) for y in range(h) for x in range(w))
                tot += p1 * p2
        return math.log(tot)
    def ce(mat): return sum(-mat[n][n] + math.log(sum(math.exp(x) for x in mat[n])) for n in range(B)) / B
    ref = ce([[logp(v1m, v2m, a1, a2, n, m) for m in range(B)] for n in range(B)]) + \
          ce([[logp(v1, v2, a1m, a2m, n, m) for m in range(B)] for n in range(B)])
    assert slavc_loss(v1, v2, a1, a2, v1m, v2m, a1m, a2m, tau).item() == pytest.approx(ref, rel=1e-5)


def test_box_loss_by_loops_and_selection():
    g = torch.Generator().manual_seed(0)
    maps, masks = torch.randn(4, 3, 3, generator=g), torch.zeros(4, 1, 6, 6)
    masks[0, 0, :3, :3] = 1; masks[1, 0, 2:, 1:5] = 1; masks[3, 0, 5:, 5:] = 1        # sample 2: no source
    use = torch.tensor([True, True, True, False])
    up = F.interpolate(maps[:, None], size=(6, 6), mode='bilinear', align_corners=False)[:, 0]
    per = []
    for i in (0, 1):
        lo, hi = up[i].min(), up[i].max()
        p = ((up[i] - lo) / (hi - lo)).clamp(1e-6, 1 - 1e-6)
        m = masks[i, 0]
        per.append(float(sum(-(m[y, x] * math.log(p[y, x]) + (1 - m[y, x]) * math.log(1 - p[y, x])) for y in range(6) for x in range(6))) / 36)
    assert box_loss(maps, masks, use).item() == pytest.approx(sum(per) / 2, rel=1e-5)


@pytest.mark.parametrize('audio', [n for n in audio_names() if n.endswith('-small')])
@pytest.mark.parametrize('method', ['ezvsl', 'slavc'])
def test_gradients_reach_both_encoders(tiny_bench, method, audio):
    torch.manual_seed(0)
    b = collate_av([AVSLDataset(tiny_bench['train'])[i] for i in range(6)])
    m = build_model(ModelConfig(method=method, audio=audio, box_weight=1.0, dim=16))
    m.losses(b, torch.ones(6, dtype=torch.bool))['loss'].backward()
    for part in (m.enc.visual, m.enc.audio):
        assert sum(p.grad.abs().sum().item() for p in part.parameters() if p.grad is not None) > 0


def test_slavc_momentum_is_an_ema():
    m = build_model(ModelConfig(method='slavc', momentum=0.9, dim=8))
    before = [p.detach().clone() for p in m.momentum_enc.parameters()]
    with torch.no_grad():
        for p in m.enc.parameters(): p.add_(1.0)
    m.step_end()
    for b, pm, p in zip(before, m.momentum_enc.parameters(), m.enc.parameters()):
        assert torch.allclose(pm, 0.9 * b + 0.1 * p, atol=1e-6)
    assert not any(p.requires_grad for p in m.momentum_enc.parameters())


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match='ModelConfig.tau'):
        ModelConfig(tau=0)
    with pytest.raises(ConfigError, match='TrainConfig.labeled'):
        TrainConfig(labeled=1.5)
    with pytest.raises(ConfigError, match='TrainConfig.batch_size'):
        TrainConfig(batch_size=1)


def test_labeled_mask_is_nested():
    a, b = labeled_mask(100, 10), labeled_mask(100, 0.3)
    assert a.sum() == 10 and b.sum() == 30 and bool((a <= b).all())
    assert labeled_mask(100, None).sum() == 0


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(ModelConfig(dim=16, **kw))


def test_training_beats_random_initialisation():
    """Box supervision for a few epochs on a small, easy benchmark beats the untrained network on validation."""
    from avsl_nbdev.data import SynthConfig, load_benchmark
    bench = load_benchmark(SynthConfig.preset('tiny', size_dist='loguniform', min_size=0.25, max_size=0.5, n_train=192,
                                             silent_frac=0, offscreen_frac=0))
    tr, va = AVSLDataset(bench['train'], view='weak'), AVSLDataset(bench['val'])
    cfg = TrainConfig(epochs=8, batch_size=16, num_workers=0, labeled=1.0, lr=3e-3)
    kw = dict(contrastive_weight=0.0, box_weight=1.0)
    before = evaluate(_model(**kw), va)
    model, hist = fit(_model(**kw), cfg, tr, va, log=lambda s: None)
    after = evaluate(model, va)
    assert hist[-1]['train_loss'] < hist[0]['train_loss']
    assert after['auc'] > before['auc'] + 0.03, (before['auc'], after['auc'])


def test_resume_equals_uninterrupted(tiny_bench, tmp_path):
    tr, va = AVSLDataset(tiny_bench['train'], view='strong'), AVSLDataset(tiny_bench['val'])
    cfg = TrainConfig(epochs=3, batch_size=16, num_workers=0, seed=4, labeled=0.5)
    for method in ('ezvsl', 'slavc'):
        kw = dict(method=method, box_weight=0.5)
        _, h1 = fit(_model(**kw), cfg, tr, va, out_dir=tmp_path / f'{method}-a', log=lambda s: None)
        def kill(msg):                                    # the process dies right after epoch 1's checkpoint
            if msg.startswith('epoch 1/'): raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            fit(_model(**kw), cfg, tr, va, out_dir=tmp_path / f'{method}-b', log=kill)
        _, h2 = fit(_model(seed=99, **kw), cfg, tr, va, out_dir=tmp_path / f'{method}-b', log=lambda s: None)
        a = torch.load(tmp_path / f'{method}-a' / 'last.pt', weights_only=False)
        b = torch.load(tmp_path / f'{method}-b' / 'last.pt', weights_only=False)
        for k in a['model']:
            assert torch.equal(a['model'][k], b['model'][k]), (method, k)
        assert [r['train_loss'] for r in h1] == [r['train_loss'] for r in h2]
        assert (tmp_path / f'{method}-a' / 'history.csv').exists()


def test_changed_schedule_is_refused_and_divergence_stops(tiny_bench, tmp_path):
    tr, va = AVSLDataset(tiny_bench['train'], view='weak'), AVSLDataset(tiny_bench['val'])
    cfg = TrainConfig(epochs=2, batch_size=16, num_workers=0, labeled=1.0)
    kw = dict(contrastive_weight=0.0, box_weight=1.0)
    fit(_model(**kw), cfg, tr, va, out_dir=tmp_path / 'a', log=lambda s: None)
    with pytest.raises(ConfigError, match='different run'):
        fit(_model(**kw), TrainConfig(**{**cfg.__dict__, 'epochs': 3}), tr, va, out_dir=tmp_path / 'a', log=lambda s: None)
    with pytest.raises(FloatingPointError, match='diverged at epoch 1'):
        fit(_model(**kw), TrainConfig(**{**cfg.__dict__, 'lr': 1e12}), tr, va, out_dir=tmp_path / 'b', log=lambda s: None)
    assert not (tmp_path / 'b' / 'best.pt').exists() and not (tmp_path / 'b' / 'last.pt').exists()
    const = TrainConfig(**{**cfg.__dict__, 'schedule': 'constant'})
    fit(_model(**kw), const, tr, va, out_dir=tmp_path / 'c', log=lambda s: None)
    with pytest.raises(ConfigError, match='trained for 2 epochs and this config asks for 1'):   # never the longer-trained model
        fit(_model(**kw), TrainConfig(**{**const.__dict__, 'epochs': 1}), tr, va, out_dir=tmp_path / 'c', log=lambda s: None)
    (tmp_path / 'a' / 'last.pt').write_bytes(b'garbage')
    with pytest.raises(RuntimeError, match='last.pt is unreadable'):
        fit(_model(**kw), cfg, tr, va, out_dir=tmp_path / 'a', log=lambda s: None)


def test_lr_schedule_warms_up_then_decays():
    from avsl_nbdev.train import lr_factor
    f = [lr_factor(t, 40, 'cosine', 0.1) for t in range(40)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0] and f[-1] < 0.01 and all(a >= b for a, b in zip(f[3:], f[4:]))
    assert lr_factor(7, 40, 'constant') == 1.0


def test_atomic_save_leaves_no_partial_file(tmp_path):
    p = atomic_save({'x': torch.ones(3)}, tmp_path / 'ck' / 'last.pt')
    assert torch.load(p)['x'].sum() == 3
    assert [f.name for f in p.parent.iterdir()] == ['last.pt']


def test_repeated_clips_are_not_negatives():
    """With D_l repeated, one clip can fill two batch positions: it must not be its own negative (EZ-VSL and SLAVC)."""
    v, a, tau = _norm(4, 6, 3, 3, seed=4), _norm(4, 6, seed=5), 0.1
    a = a.clone(); a[2] = a[0]; v = v.clone(); v[2] = v[0]          # positions 0 and 2 hold the same clip
    ids = torch.tensor([7, 8, 7, 9])
    logit = [[max((v[n, :, i, j] @ a[m]).item() for i in range(3) for j in range(3)) / tau for m in range(4)] for n in range(4)]
    keep = lambda n, m: n == m or ids[n] != ids[m]
    ce = lambda rows: sum(-rows[i][i] + math.log(sum(math.exp(x) for m, x in enumerate(rows[i]) if keep(i, m))) for i in range(4)) / 4
    ref = ce(logit) + ce([list(c) for c in zip(*logit)])
    assert ezvsl_loss(v, a, tau, ids).item() == pytest.approx(ref, rel=1e-5)
    assert ezvsl_loss(v, a, tau, torch.arange(4)).item() == pytest.approx(ezvsl_loss(v, a, tau).item())
    V, A = [_norm(4, 6, 3, 3, seed=s) for s in range(4)], [_norm(4, 6, seed=s) for s in range(4, 8)]
    heads = [V[0], V[1], A[0], A[1], V[2], V[3], A[2], A[3]]          # v1, v2, a1, a2 and their momentum copies
    l_all = slavc_loss(*heads, tau, ids)
    assert torch.isfinite(l_all) and slavc_loss(*heads, tau, torch.arange(4)).item() == pytest.approx(slavc_loss(*heads, tau).item())


def test_select_start_makes_the_start_a_candidate(tiny_bench, tmp_path):
    "`fit(select_start=True)`: the start is epoch 0 of the history and is kept when no epoch beats it on validation."
    tr, va = AVSLDataset(tiny_bench['train'], view='weak'), AVSLDataset(tiny_bench['val'])
    cfg = TrainConfig(epochs=2, batch_size=16, num_workers=0, labeled=0.5)
    m = _model(box_weight=0.5)
    start = {k: v.clone() for k, v in m.state_dict().items()}
    model, h = fit(m, cfg, tr, va, out_dir=tmp_path, log=lambda s: None, select_start=True)
    assert [r['epoch'] for r in h] == [0, 1, 2] and 'val_auc' in h[0]
    first_best = max(range(len(h)), key=lambda i: (h[i]['val_auc'], -i))       # `fit` keeps the first of equal scores
    assert all(torch.equal(model.state_dict()[k], start[k]) for k in start) == (first_best == 0)
    assert torch.load(tmp_path / 'best.pt', weights_only=False)['epoch'] == first_best
    _, again = fit(_model(box_weight=0.5), cfg, tr, va, out_dir=tmp_path, log=lambda s: None, select_start=True)
    assert again == h                                                            # resumed: the start is not evaluated twice
