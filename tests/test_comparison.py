"The comparison holds the encoders fixed across methods at every preset; a seeded run is the same under any thread setting."
import pytest
import avsl_nbdev.dmt as dmt
import avsl_nbdev.dmt_cli as dmt_cli
import avsl_nbdev.train as train
from avsl_nbdev.dmt import DMTConfig
from avsl_nbdev.dmt_cli import encoder_fields
from avsl_nbdev.train import baseline_model, BASELINES


@pytest.fixture(autouse=True)
def gpu_trunk(tmp_path, monkeypatch):
    "A stand-in for the gpu preset's object-pretrained ResNet-18 (trained on a GPU, cached): building its configs needs the file."
    import torch
    from avsl_nbdev.encoders import ObjectPretrainConfig, ResNet18Trunk, cnn_weights_name
    monkeypatch.setenv('AVSL_CACHE', str(tmp_path))
    monkeypatch.delenv('AVSL_RESNET18_WEIGHTS', raising=False)
    (tmp_path / 'weights').mkdir()
    torch.save(ResNet18Trunk().torchvision_state(), tmp_path / 'weights' / cnn_weights_name(ObjectPretrainConfig.preset('gpu', visual='resnet18')))


def test_gpu_baselines_use_dmt_encoders():
    enc = encoder_fields(DMTConfig.preset('gpu'))
    assert (enc['visual'], enc['audio']) == ('resnet18', 'vggish') and 'resnet18-objects-' in enc['visual_weights']
    for name in ('EZ-VSL', 'SLAVC'):
        m = baseline_model(name, 'gpu', **enc)
        assert (m.visual, m.audio, m.dim, m.visual_weights) == (enc['visual'], enc['audio'], enc['dim'], enc['visual_weights'])
        assert m.method == BASELINES[name][0].method          # only the encoders change, not the method


def test_small_presets_unchanged():
    # at the tiny (and cpu) preset DMT already uses the baselines' encoders: same configs, so cached runs are reused
    assert baseline_model('EZ-VSL', 'tiny', **encoder_fields(DMTConfig.preset('tiny'))) == baseline_model('EZ-VSL', 'tiny')


def test_compare_passes_dmt_encoders_to_baselines(monkeypatch):
    class Stop(Exception): pass
    seen = {}
    def grid(preset, seeds, names, log, model=None, synth=None):
        seen.update(preset=preset, names=names, model=model, synth=synth); raise Stop
    monkeypatch.setattr(dmt_cli, 'run_dmt', lambda c, s, log=None: {'stage1': {'test': {}}, 'stage2': {'test': {}}})
    monkeypatch.setattr(train, 'baseline_grid', grid)
    with pytest.raises(Stop): dmt_cli.compare('gpu', seeds=(0,), baselines=True, log=lambda s: None)
    assert seen['names'] == ['EZ-VSL', 'SLAVC'] and seen['model'] == encoder_fields(DMTConfig.preset('gpu'))
    assert seen['model']['visual'] == 'resnet18' and seen['synth'] == {}
    with pytest.raises(Stop): dmt_cli.compare('gpu', seeds=(0,), baselines=True, log=lambda s: None, synth=dict(seed=1))
    assert seen['synth'] == dict(seed=1)                  # the held-out check trains the baselines on its own benchmark


def test_heldout_keeps_the_setting_and_trains_plain_baselines(monkeypatch):
    # the held-out check of the paper's setting: DMT with the setting's overrides, baselines on DMT's encoders, and the
    # plain baselines (the training chapter's own encoders: model=None), all on the held-out benchmark
    class Stop(Exception): pass
    seen = {'grid': []}
    def fake_run(c, s, log=None):
        seen.update(cfg=c, synth=s); return {'stage1': {'test': {}}, 'stage2': {'test': {}}}
    def grid(preset, seeds, names, log, model=None, synth=None):
        seen['grid'].append((names, model, synth))
        if len(seen['grid']) == 2: raise Stop
        return []
    monkeypatch.setattr(dmt_cli, 'run_dmt', fake_run)
    monkeypatch.setattr(train, 'baseline_grid', grid)
    with pytest.raises(Stop):
        dmt_cli.heldout('gpu', benchmarks={'held out': dict(seed=1)}, plain_names=('EZ-VSL',), log=lambda s: None,
                        box_weight=8.0, stage1_box_weight=64.0)
    assert (seen['cfg'].box_weight, seen['cfg'].stage1_box_weight, seen['synth'].seed) == (8.0, 64.0, 1)
    enc = encoder_fields(DMTConfig.preset('gpu', box_weight=8.0, stage1_box_weight=64.0))
    assert seen['grid'] == [(['EZ-VSL', 'oracle (boxes, all train)'], enc, dict(seed=1)), (['EZ-VSL'], None, dict(seed=1))]


# --- fix 5: a seeded run is bit-reproducible on the CPU whatever the machine's thread setting -------------------------

def _fresh_run(tmp, omp: str) -> dict:
    "`avsl_dmt --preset tiny` in a fresh process with its own empty cache (a fresh machine) and `omp` OpenMP threads."
    import json, os, subprocess, sys
    env = {**os.environ, 'AVSL_CACHE': str(tmp / 'cache'), 'AVSL_RUNS': str(tmp / 'runs'), 'OMP_NUM_THREADS': omp,
           'AVSL_PRESET': 'tiny'}
    env.pop('AVSL_CPU_THREADS', None)
    p = subprocess.run([sys.executable, '-m', 'avsl_nbdev.dmt_cli', '--preset', 'tiny', '--out', str(tmp / 'out')], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    strip = lambda rows: [{k: v for k, v in r.items() if k != 'seconds'} for r in rows]
    return {k: strip(json.loads((tmp / 'out' / k / 'history.json').read_text())) for k in ('teacher_a', 'teacher_b', 'stage2')}


def test_seeded_run_identical_across_thread_settings(tmp_path):
    # measured before the fix: one thread against two gave different losses from epoch 1 on
    a, b = _fresh_run(tmp_path / 'one', '1'), _fresh_run(tmp_path / 'two', '2')
    assert a == b                                            # every loss, pseudo-label count and validation metric, bit for bit
    assert {r['cpu_threads'] for rows in a.values() for r in rows} == {2}     # the default, whatever OpenMP says


# --- chapter 9 reads the training chapter's committed baselines instead of retraining them ---------------------------

def test_committed_baselines_only_on_the_same_encoders(tmp_path):
    from avsl_nbdev.core import ConfigError
    from avsl_nbdev.dmt_cli import committed_baselines
    f = tmp_path / 'baselines_tiny.csv'
    f.write_text('model,seeds,ciou50\nEZ-VSL,3,0.46 ± 0.008\nSLAVC,3,0.359 ± 0.02\n"oracle (boxes, all train)",3,0.739 ± 0.019\n'
                 'trivial: full,-,0.209\n')
    tab = committed_baselines(f, 'tiny', encoder_fields(DMTConfig.preset('tiny')))
    assert list(tab.index) == ['EZ-VSL (self-supervised)', 'SLAVC (self-supervised)', 'oracle (boxes, all train)']
    assert tab.loc['EZ-VSL (self-supervised)', 'ciou50'] == '0.46 ± 0.008'
    other = {**encoder_fields(DMTConfig.preset('tiny')), 'audio': 'soundnet-small'}      # not the table's encoders
    with pytest.raises(ConfigError, match='encoders'): committed_baselines(f, 'tiny', other)
    f.write_text('model,seeds,ciou50\nEZ-VSL,3,0.46 ± 0.008\n')
    with pytest.raises(Exception, match='lacks'): committed_baselines(f, 'tiny', encoder_fields(DMTConfig.preset('tiny')))
    with pytest.raises(FileNotFoundError, match='baselines=True'):
        committed_baselines(tmp_path / 'none.csv', 'tiny', encoder_fields(DMTConfig.preset('tiny')))
