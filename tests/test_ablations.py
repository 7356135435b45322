"""The ablation sweep (nbs/10_ablations.ipynb): the plan, the unlabeled subsets, tables, example picking, and a tiny
sweep end to end in two worker processes, then resumed from its cache without training anything."""
import dataclasses, json
import numpy as np
import pandas as pd
import pytest
import torch

from avsl_nbdev.core import ConfigError
from avsl_nbdev.dmt import DMTConfig, dmt_key, stage2_indices, check_out_dir
from avsl_nbdev.ablations import (output_tag, AblationConfig, COMPONENTS, plan, pair_config, results_frame, summary, pick_examples,
                                  run_ablations, main, METRICS)


GRID = dict(study_seeds=None, ratios=(0.005, 0.01, 0.02, 0.05, 0.1), ratio=0.05, pairs=('RV', 'RS', 'VS'),
            slavc_pairs=('VS',), multiples=(1, 2, 4), components=tuple(COMPONENTS),
            baselines=('EZ-VSL', 'SLAVC', 'oracle (boxes, all train)'))   # the full grid (the gpu preset's shape), cpu testbed


def test_plan_full_grid():
    a = AblationConfig.preset('cpu', **GRID)
    rows = plan(a)
    per = pd.DataFrame([{k: r[k] for k in ('exp', 'variant', 'x', 'seed')} for r in rows])
    # every point of every experiment has all three seeds
    assert (per.groupby(['exp', 'variant', 'x'], dropna=False).seed.nunique() == 3).all()
    counts = per[per.seed == 0].exp.value_counts().to_dict()
    assert counts == {'ratios': 10, 'components': len(COMPONENTS), 'backbones': 4, 'unlabeled': 3, 'baselines': 3}
    # D_l follows the ratio; the single mean teacher has one teacher and no filter
    r = [x for x in rows if x['exp'] == 'ratios' and x['seed'] == 1]
    assert [x['cfg'].labeled for x in r if x['variant'] == 'DMT'] == list(a.ratios)
    assert all(x['cfg'].teachers == 1 and not x['cfg'].filter for x in r if x['variant'] == 'single mean teacher')
    comp = {x['variant']: x['cfg'] for x in rows if x['exp'] == 'components' and x['seed'] == 0}
    assert comp['no noise filter'].filter is False and comp['no IPL: union'].combine == 'union'
    assert comp["no IPL: teacher A's mask"].combine == 'a' and comp['no EMA: teacher = student'].teacher_update == 'copy'
    assert comp['no EMA: frozen teachers'].teacher_update == 'frozen' and comp['full DMT'] == a.base(0)
    unl = [(x['cfg'].unlabeled, x['cfg'].stage2_epochs) for x in rows if x['exp'] == 'unlabeled' and x['seed'] == 0]
    assert unl == [(0.25, 48), (0.5, 24), (None, 12)]     # 1x, 2x, 4x = all of the pool; the same number of steps
    # backbone pairs are scored on both teachers' mean map, not on teacher A (whose backbone differs between pairs)
    assert {x['cfg'].eval_net for x in rows if x['exp'] == 'backbones'} == {'teachers'}
    # shared runs are one config: full DMT = 4x unlabeled = the default ratio's DMT
    full = dmt_key(comp['full DMT'])
    same = [x for x in rows if x['seed'] == 0 and 'cfg' in x and dmt_key(x['cfg']) == full]
    assert {x['exp'] for x in same} == {'components', 'unlabeled', 'ratios'}


def test_plan_cpu_preset_reuses_chapter_9():
    a = AblationConfig.preset('cpu')
    rows = plan(a)
    per = pd.DataFrame([{k: r[k] for k in ('exp', 'variant', 'x', 'seed')} for r in rows])
    n = per.groupby(['exp', 'variant', 'x'], dropna=False).seed.nunique()
    assert (n.loc['ratios'] == 3).all() and (n.drop('ratios') == 1).all()      # three seeds for the ratio sweep only
    assert set(per.exp) == {'ratios', 'components', 'backbones', 'unlabeled', 'baselines'}
    # the unlabeled amounts: a quarter and half of the pool with 4x / 2x the stage-2 epochs (equal steps); x1 is full DMT
    unl = {x['x']: x['cfg'] for x in rows if x['exp'] == 'unlabeled'}
    assert unl[4] == DMTConfig.preset('cpu', labeled=0.01, seed=0)
    assert (unl[1].unlabeled, unl[1].stage2_epochs, unl[2].unlabeled, unl[2].stage2_epochs) == (0.25, 48, 0.5, 24)
    # the ratio sweep's runs are chapter 9's: D_l = 256 is the DMT preset itself, 1 % is compare(labeled=0.01)'s
    dmt = {x['x']: x['cfg'] for x in rows if x['exp'] == 'ratios' and x['variant'] == 'DMT' and x['seed'] == 2}
    assert dmt == {256 / 3000: DMTConfig.preset('cpu', seed=2), 0.01: DMTConfig.preset('cpu', labeled=0.01, seed=2)}
    comp = {x['variant']: x['cfg'] for x in rows if x['exp'] == 'components'}
    assert comp['full DMT'] == DMTConfig.preset('cpu', labeled=0.01, seed=0)
    assert comp['one teacher (single mean teacher)'] == comp['full DMT'].single_teacher()
    assert set(comp) == {'full DMT', 'no noise filter', 'no IPL: union', 'no EMA: frozen teachers', 'one teacher (single mean teacher)'}
    assert [x['baseline'] for x in rows if x['exp'] == 'baselines'] == ['EZ-VSL', 'SLAVC', 'oracle (boxes, all train)']
    # the backbone pairs at 1 %, seed 0, scored on both teachers; V+S around EZ-VSL is full DMT but for the scored network
    bb = {x['variant']: x['cfg'] for x in rows if x['exp'] == 'backbones'}
    assert list(bb) == ['EZ-VSL w/ DMT R+V', 'EZ-VSL w/ DMT R+S', 'EZ-VSL w/ DMT V+S', 'SLAVC w/ DMT V+S']
    assert bb['EZ-VSL w/ DMT V+S'] == dataclasses.replace(comp['full DMT'], eval_net='teachers')
    assert (bb['EZ-VSL w/ DMT R+V'].audio_a, bb['EZ-VSL w/ DMT R+V'].audio_b) == ('resnet-small', 'vggish-small')
    assert bb['SLAVC w/ DMT V+S'].method == 'slavc'


def test_pairs_and_config_errors():
    c = DMTConfig.preset('gpu')
    assert (pair_config(c, 'RV').audio_a, pair_config(c, 'RV').audio_b) == ('resnet', 'vggish')      # full-size nets
    assert pair_config(DMTConfig.preset('cpu'), 'RS', 'slavc').audio_a == 'resnet-small'
    for bad, field in [(dict(pairs=('VV',)), 'pairs'), (dict(ratios=(0.0,)), 'ratios'), (dict(seeds=0), 'seeds'),
                       (dict(components=('nope',)), 'components'), (dict(dmt=dict(tau=2.0)), 'DMTConfig.tau')]:
        with pytest.raises(ConfigError, match=field): AblationConfig(**bad)
    with pytest.raises(SystemExit): main(['--preset', 'tiny', '--jobs', '0'])                # one line, exit 2
    with pytest.raises(ConfigError, match='preset'): AblationConfig.preset('huge')
    # dict overrides add to the preset's schedule instead of replacing it
    a = AblationConfig.preset('tiny', dmt=dict(tau=0.6))
    assert a.dmt == dict(stage2_epochs=2, tau=0.6)
    for bad, field in [(dict(ratios=(0.01, 0)), 'ratios'), (dict(ratio=1.5), 'ratio'), (dict(baselines=('LVS',)), 'baselines'),
                       (dict(study_seeds=0), 'study_seeds')]:
        with pytest.raises(ConfigError, match=field): AblationConfig(**bad)


def test_unlabeled_subsets_nested():
    lab = torch.zeros(200, dtype=torch.bool); lab[::10] = True            # 20 labeled, 180 unlabeled
    unl = lambda idx: set(idx[~lab[idx].numpy()].tolist())
    quarter, half, full = (stage2_indices(lab, 0.25, u) for u in (0.25, 0.5, None))
    assert len(unl(quarter)) == 45 and len(unl(half)) == 90 and len(unl(full)) == 180
    assert unl(quarter) < unl(half) < unl(full)                          # nested: more data only adds frames
    # D_l stays about 25 % of every epoch (20 labeled frames repeated a whole number of times: 1, 2, 3)
    assert [round(lab[idx].float().mean().item(), 3) for idx in (quarter, half, full)] == [0.308, 0.308, 0.25]
    assert len(unl(stage2_indices(lab, 0.25, 30))) == 30
    with pytest.raises(ConfigError, match='DMTConfig.unlabeled'): stage2_indices(lab, 0.25, 500)
    with pytest.raises(ConfigError, match='DMTConfig.unlabeled'): DMTConfig(unlabeled=1.5)


def test_new_field_keeps_old_run_keys(tmp_path):
    c = DMTConfig.preset('cpu')
    assert 'unlabeled' not in dmt_key(c) and dmt_key(DMTConfig.preset('cpu', unlabeled=0.5))['unlabeled'] == 0.5
    # a run folder written before the field existed is still resumable with the default
    old = {k: v for k, v in dataclasses_asdict(c).items() if k != 'unlabeled'}
    (tmp_path / 'dmt_config.json').write_text(json.dumps(old))
    (tmp_path / 'teacher_a').mkdir(); torch.save({'epoch': 1}, tmp_path / 'teacher_a' / 'last.pt')   # a folder that has trained
    check_out_dir(c, tmp_path)
    (tmp_path / 'dmt_config.json').write_text(json.dumps(old))
    with pytest.raises(ConfigError, match='unlabeled'): check_out_dir(DMTConfig.preset('cpu', unlabeled=0.5), tmp_path)


def dataclasses_asdict(c):
    import dataclasses
    return dataclasses.asdict(c)


def test_results_frame_and_summary():
    def res(auc, s1=None):
        test = {m: auc for m in METRICS}
        out = {'stage2': {'val': {'auc': auc}, 'test': test}}
        if s1 is not None: out['stage1'] = {'val': {'auc': s1}, 'test': {m: s1 for m in METRICS}}
        return out
    rows = [dict(exp='ratios', variant='DMT', x=0.1, seed=s, cfg=None, result=res(a, b))
            for s, (a, b) in enumerate([(0.2, 0.1), (0.4, 0.3)])]
    rows += [dict(exp='baselines', variant='EZ-VSL', x=None, seed=0, baseline='EZ-VSL',
                  result={'val': {'auc': 0.5}, 'test': {m: 0.5 for m in METRICS}})]
    df = results_frame(rows)
    assert len(df) == 5 and set(df.variant) == {'DMT', 'supervised-only (stage 1)', 'EZ-VSL'}
    dmt = df[df.variant == 'DMT'].sort_values('seed')
    assert dmt.stage1_a_ciou50.tolist() == [0.1, 0.3]                            # the stage-1 teacher of each DMT row
    assert df[df.variant != 'DMT'].stage1_a_ciou50.isna().all() and 'stage1_b_ciou50' not in df   # none without a teacher B
    two = dict(rows[0], exp='backbones', result={**rows[0]['result'], 'stage1_b': {'val': {'auc': 0.7}, 'test': {'ciou50': 0.7}}})
    assert results_frame([two])[['stage1_a_ciou50', 'stage1_b_ciou50']].values.tolist() == [[0.1, 0.7]]   # both teachers
    tab = summary(df, 'ratios', ('auc',))
    assert tab.loc['DMT @ 0.1', 'auc'] == '0.3 ± 0.1'                              # mean, population std over seeds
    assert tab.loc['supervised-only (stage 1) @ 0.1', 'auc'] == '0.2 ± 0.1'
    assert summary(df, 'baselines', ('auc',)).loc['EZ-VSL', 'seeds'] == 1


def test_pick_examples(tiny_bench):
    test = tiny_bench['test']
    cases = pick_examples(test, 3)
    kinds, boxes, sounding = test['kind'], test['boxes'], test['sounding']
    assert len(cases['silent']) > 0 and all(kinds[i] == 1 for i in cases['silent'])
    area = lambda i: min((b[2] - b[0]) * (b[3] - b[1]) for b, s in zip(boxes[i], sounding[i]) if s)
    normal = [i for i in range(len(test)) if kinds[i] == 0 and any(sounding[i])]
    assert [area(i) for i in cases['small']] == sorted(area(i) for i in normal)[:3]
    assert len(boxes[cases['multi-object'][0]]) == max(len(boxes[i]) for i in normal)


def test_tiny_sweep_parallel_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv('AVSL_RUNS', str(tmp_path / 'runs'))              # inherited by the spawned workers
    a = AblationConfig.preset('tiny', ratios=(0.2,), components=('full DMT', 'no EMA: frozen teachers'),
                              pairs=('VS',), slavc_pairs=(), multiples=(1, 2))
    out = run_ablations(a, tmp_path / 'fig', jobs=2, log=lambda *x, **k: None)
    df = out['df']
    assert set(df.exp) == {'ratios', 'components', 'backbones', 'unlabeled', 'baselines'}
    for p in out['paths'].values(): assert p.exists() and p.stat().st_size > 1000
    tag = output_tag(a)                                                   # a reduced sweep never writes the preset's names
    assert tag.startswith('tiny-')
    saved = pd.read_csv(tmp_path / 'fig' / f'ablations_{tag}.csv')
    assert len(saved) == len(df) and np.allclose(saved.auc, df.auc, equal_nan=True)
    meta = json.loads((tmp_path / 'fig' / f'ablations_{tag}.json').read_text())
    assert meta['jobs'] == 2 and set(meta['trivial']) == {'full', 'centre', 'random'}
    curves = pd.read_csv(tmp_path / 'fig' / f'ablation_curves_{tag}.csv')
    assert set(curves.epoch) == {1, 2} and curves.accept_rate.between(0, 1).all()
    ckpts = {p: p.stat().st_mtime_ns for p in (tmp_path / 'runs').rglob('*.pt')}
    assert len(ckpts) >= 10
    again = run_ablations(a, tmp_path / 'fig2', jobs=1, log=lambda *x, **k: None)      # resumed: nothing retrained
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / 'runs').rglob('*.pt')} == ckpts
    pd.testing.assert_frame_equal(again['df'], df)
    # the sweep's baselines are the training chapter's runs: train.baseline_grid (dmt.compare's) finds them in the cache
    from avsl_nbdev.train import baseline_grid
    from avsl_nbdev.dmt_cli import encoder_fields
    res = baseline_grid('tiny', seeds=(0,), names=['EZ-VSL', 'oracle (boxes, all train)'], log=lambda *x, **k: None,
                        model=encoder_fields(a.base(0)))
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / 'runs').rglob('*.pt')} == ckpts
    assert [r['test']['auc'] for r in res] == df.set_index('variant').loc[['EZ-VSL', 'oracle (boxes, all train)'], 'auc'].tolist()


def test_plain_baselines_are_the_training_chapters_runs():
    "'cpu-pretrained': EZ-VSL and SLAVC on DMT's pretrained audio and, as the papers run them, on chapter 04b's encoders (the same runs)."
    from avsl_nbdev.ablations import baseline_configs, plan, output_tag
    from avsl_nbdev.train import baseline_configs as chapter_configs
    a = AblationConfig.preset('cpu-pretrained')
    rows = [r for r in plan(a) if r['exp'] == 'baselines' and r['seed'] == 0]
    assert [r['variant'] for r in rows] == ['EZ-VSL', 'SLAVC', 'oracle (boxes, all train)', 'EZ-VSL, audio from scratch',
                                            'SLAVC, audio from scratch']
    for name in ('EZ-VSL', 'SLAVC'):
        pre, plain = baseline_configs(a, name, 0), baseline_configs(a, name, 0, plain=True)
        assert pre[0].audio_weights is not None and plain[0].audio_weights is None
        assert plain == chapter_configs(name, 'cpu', 0) and pre[0].visual_weights == plain[0].visual_weights
    assert output_tag(a) == 'cpu-pretrained' and output_tag(AblationConfig.preset('cpu')) == 'cpu'
    assert all(r['cfg'].audio_pretrain == 'cpu' for r in plan(a) if 'cfg' in r)
    with pytest.raises(ConfigError, match='plain_baselines'): AblationConfig(plain_baselines=('nope',))


def test_pretrained_studies_share_the_ratio_runs():
    "'cpu-pretrained': the studies run at D_l = 64, where its full DMT and single mean teacher are the ratio sweep's runs (one key)."
    from avsl_nbdev.dmt import audio_weights
    rows = plan(AblationConfig.preset('cpu-pretrained'))
    key = lambda r: json.dumps(dmt_key(r['cfg']), sort_keys=True)
    ratio = {(r['variant'], r['seed']): key(r) for r in rows if r['exp'] == 'ratios' and r['cfg'].labeled == 64}
    comp = {(r['variant'], r['seed']): key(r) for r in rows if r['exp'] == 'components'}
    for s in range(3):
        assert comp[('full DMT', s)] == ratio[('DMT', s)]
        assert comp[('one teacher (single mean teacher)', s)] == ratio[('single mean teacher', s)]
        assert comp[('no noise filter', s)] != ratio[('DMT', s)]
    pairs = [r['cfg'] for r in rows if r['exp'] == 'backbones']
    assert len(pairs) == 9 and {c.labeled for c in pairs} == {64}
    assert {(c.audio_a, c.audio_b) for c in pairs} == {('resnet-small', 'vggish-small'), ('resnet-small', 'soundnet-small'),
                                                        ('vggish-small', 'soundnet-small')}
    assert all(audio_weights(c, c.audio_a) is None for c in pairs if c.audio_a.startswith('resnet'))   # R: from scratch, as in EZ-VSL's code
