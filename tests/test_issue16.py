"Issue 16 (DMT fidelity): the comparison holds the encoders fixed across methods at every preset."
import pytest
import avsl_nbdev.dmt as dmt
import avsl_nbdev.train as train
from avsl_nbdev.dmt import DMTConfig, encoder_fields
from avsl_nbdev.train import baseline_model, BASELINES


def test_gpu_baselines_use_dmt_encoders():
    enc = encoder_fields(DMTConfig.preset('gpu'))
    assert (enc['visual'], enc['audio']) == ('resnet18', 'vggish')
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
    def grid(preset, seeds, names, log, model=None):
        seen.update(preset=preset, names=names, model=model); raise Stop
    monkeypatch.setattr(dmt, 'run_dmt', lambda c, s, log=None: {'stage1': {'test': {}}, 'stage2': {'test': {}}})
    monkeypatch.setattr(train, 'baseline_grid', grid)
    with pytest.raises(Stop): dmt.compare('gpu', seeds=(0,), baselines=True, log=lambda s: None)
    assert seen['names'] == ['EZ-VSL', 'SLAVC'] and seen['model'] == encoder_fields(DMTConfig.preset('gpu'))
    assert seen['model']['visual'] == 'resnet18'
