"Corrupt weights / feature files name the file; avsl_ablations --seeds 1 never overwrites the committed figures."
import pytest
import torch

from avsl_nbdev import valor, distill, ablations


def test_distill_corrupt_weights_named(tmp_path):
    bad = tmp_path / 'visual-teacher-x.pt'
    bad.write_bytes(b'PK\x03\x04 truncated')
    with pytest.raises(ValueError, match=str(bad)): distill.load_weights(distill.VisualTeacher(), bad)
    torch.save({'nope': torch.zeros(1)}, bad)                                   # readable but not this network's
    with pytest.raises(ValueError, match='mismatched'): distill.load_weights(distill.VisualTeacher(), bad)


def test_valor_corrupt_teacher_and_features_named(tmp_path):
    bad = tmp_path / 'teacher.pt'; bad.write_bytes(b'\x80\x02 not a checkpoint')
    with pytest.raises(ValueError, match=str(bad)): valor.load_teacher(bad)
    (tmp_path / 'f').mkdir(); f = tmp_path / 'f' / 'abcdefghijk.npy'; f.write_bytes(b'\x93NUMPY garbage')
    with pytest.raises(valor.LLPFormatError, match=str(f)): valor.load_llp_features({'audio': tmp_path / 'f'}, ['abcdefghijk_000'])


def test_valor_corrupt_feature_cache_named(tmp_path, monkeypatch):
    monkeypatch.setattr(valor, 'llp_synth_dir', lambda cfg: tmp_path)
    for part in ('train', 'val', 'test', 'teacher'): (tmp_path / f'{part}.npz').write_bytes(b'PK truncated')
    with pytest.raises(ValueError, match=r'train\.npz: corrupt SynthLLP cache file'): valor.load_llp_synth(valor.LLPSynthConfig.preset('tiny'))


def test_ablation_outputs_tagged():
    A = ablations.AblationConfig
    assert ablations.output_tag(A.preset('cpu')) == 'cpu'
    assert ablations.output_tag(A.preset('cpu', seeds=1)) == 'cpu-seeds1'
    assert ablations.output_tag(A.preset('cpu', ratio=0.1)) not in ('cpu', 'cpu-seeds1')


def test_ablations_cli_seeds_1_writes_beside_committed(monkeypatch):
    seen = {}
    def fake(a, out_dir, jobs, command=None):
        seen['tag'] = ablations.output_tag(a)
        raise SystemExit(0)
    monkeypatch.setattr(ablations, 'run_ablations', fake)
    with pytest.raises(SystemExit): ablations.main(['--preset', 'cpu', '--seeds', '1'])
    assert seen['tag'] == 'cpu-seeds1'


def test_ablations_cli_error_one_line(capsys):
    with pytest.raises(SystemExit) as e: ablations.main(['--preset', 'tiny', '--seeds', '0'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('avsl_ablations: error:') and err.count('\n') == 1 and 'seeds' in err
