"Pseudo-label explorer (nbs/11_explorer.ipynb): logic against the training filter and slow references; the widget headless."
import numpy as np
import pytest
import torch

from avsl_nbdev.dmt import DMTConfig, dmt_labeled_mask, train
from avsl_nbdev.data import AVSLDataset, collate_av
from avsl_nbdev import explorer as ex


CFG = dict(dim=16, object_pretrain=None)          # a small tiny run (no object pretraining), trained once into a folder


@pytest.fixture(scope='module')
def trained(tiny_bench, tmp_path_factory):
    out = tmp_path_factory.mktemp('explorer') / 'run'
    return train(DMTConfig.preset('tiny', **CFG), tiny_bench, out_dir=out, log=lambda *a: None), out


@pytest.fixture(scope='module')
def run(trained, tiny_bench):
    return ex.load_dmt_run(trained[1], data=tiny_bench, log=lambda *a: None)      # the folder, loaded as a user would


@pytest.fixture(scope='module')
def data(run, tiny_bench):
    return ex.explorer_data(run, tiny_bench, n=48)


def test_data_is_unlabeled_and_cached(run, data, tiny_bench, monkeypatch):
    assert len(data['index']) == 48 and set(data['maps']) == set(ex.NETS)
    assert not dmt_labeled_mask(run['model'].cfg, tiny_bench)[data['index']].any()
    monkeypatch.setattr(ex, 'collect_maps', lambda *a, **k: pytest.fail('networks ran although the maps were cached'))
    again = ex.explorer_data(run, tiny_bench, n=48)
    assert torch.equal(again['maps']['teacher_b'], data['maps']['teacher_b'])


def test_decision_matches_the_training_filter(run, data, tiny_bench):
    "The explorer's IoU / acceptance equal DMT's own `pseudo_labels` on the same (unaugmented) frames."
    model, cfg = run['model'], run['model'].cfg
    batch = collate_av([AVSLDataset(tiny_bench['train'])[int(i)] for i in data['index'][:16]])
    with torch.no_grad():
        p = model.pseudo_labels(batch, torch.zeros(16, dtype=torch.bool))
    dec = ex.decide(data, cfg.delta, cfg.tau, 'final', cfg.combine)
    iou = dec['iou'][:16]
    torch.testing.assert_close(iou, p['iou'], atol=0.03, rtol=0)           # maps are cached as float16
    clear = (p['iou'] - cfg.tau).abs() > 0.03
    assert torch.equal(dec['accept'][:16][clear], p['accept'][clear])


def test_stats_against_a_loop(data):
    dec = ex.decide(data, 0.4, 0.3, 'stage 1')
    tab = ex.dataset_stats(data, dec)
    acc, n_good, prec = 0, 0, []
    for i in range(len(data['index'])):
        a = (data['maps']['stage1_a'][i].float() >= 0.4).numpy(); b = (data['maps']['stage1_b'][i].float() >= 0.4).numpy()
        union = (a | b).sum(); iou = (a & b).sum() / union if union else 1.0
        if iou >= 0.3:
            acc += 1
            pl, gt = a & b, data['gt'][i].numpy()
            u = (pl | gt).sum(); q = (pl & gt).sum() / u if u else 1.0
            n_good += q >= 0.5
            prec.append((pl & gt).sum() / pl.sum() if pl.sum() else 0.0)
    row = tab.iloc[0]
    assert row['accepted'] == acc and row['good'] == n_good
    if acc: assert abs(row['precision'] - np.mean(prec)) < 1e-5
    assert tab.iloc[1]['accepted'] == len(data['index'])


def test_select_partitions_and_explains(data):
    dec = ex.decide(data, 0.5, 0.5)
    n = len(data['index'])
    assert len(ex.select(data, dec, 'accepted')) + len(ex.select(data, dec, 'rejected')) == n
    assert sum(len(ex.select(data, dec, size=s)) for s in ex.SIZES[1:]) == n
    for i in ex.select(data, dec, 'accepted', 'bad'):
        assert dec['accept'][i] and not dec['good'][i]
    i = int(ex.select(data, dec)[0])
    e = ex.explain(data, dec, i)
    assert e['index'] == int(data['index'][i]) and f"{float(dec['iou'][i]):.2f}" in e['why']
    with pytest.raises(ValueError, match='quality'): ex.select(data, dec, quality='ugly')


def test_widget_headless(data, tiny_bench):
    w = ex.Explorer(data, tiny_bench, tau=0.5)
    before, frame = w.stats.value, w.frame.value
    assert '<table' in before and frame[:4] == b'\x89PNG' and w.audio.value[:4] == b'RIFF'
    w.tau.value = 0.95
    assert w.stats.value != before and 'τ=0.95' in w.stats.value
    assert torch.equal(w.dec['accept'], w.dec['iou'] >= 0.95)
    w.tau.value = 0.0                                                       # everything accepted
    w.decision.value = 'rejected'
    assert len(w.selection) == 0 and 'no frame' in w.why.value
    w.decision.value = 'all'
    w.next.click(); w.next.click(); w.prev.click()
    assert w.pos.value == min(1, w.pos.max)
    w.delta.value = 0.8                                                     # δ moves: masks and the curve recomputed
    assert w._key == (0.8, 'final') and w.dec['delta'] == 0.8


def test_load_from_folder(trained, run, tmp_path):
    first, out = trained
    assert run['model'].cfg == DMTConfig.preset('tiny', **CFG)
    assert len(run['history']['stage2']) == len(first['history']['stage2'])       # loaded, not trained again
    for k, v in first['model'].state_dict().items():
        assert torch.equal(v, run['model'].state_dict()[k]), k
    with pytest.raises(FileNotFoundError, match='dmt_config.json'): ex.load_dmt_run(tmp_path / 'nothing')
