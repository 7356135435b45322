"""Bad input is refused early, in one line, with nothing written; silent wrong results are refusals or correct results.

Config types (every config class, both command lines), devices, seeds, weights, environment settings and weight files
are checked before anything is written to `--out`; run folders whose records are missing or malformed are refused
naming the file; `--no-resume` never leaves old checkpoints under a new record; a diverged model (BatchNorm statistics
included) is never saved; history files are restored on resume; real audio with NaN samples is an error and short
clips are counted."""
import dataclasses
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from avsl_nbdev.core import ConfigError, FileFormatError, check_device
from avsl_nbdev.data import SynthConfig, load_benchmark
from avsl_nbdev.dmt import DMTConfig, RunFolderError, check_out_dir, train, read_run_config
from avsl_nbdev.dmt_cli import main
from avsl_nbdev.train import TrainConfig, check_finite
from avsl_nbdev.contrastive import ModelConfig

QUIET = lambda *a, **k: None
SMALL = dict(object_pretrain=None, dim=16, stage1_epochs=1, stage2_epochs=1)


@pytest.fixture(scope='module')
def bench():
    return load_benchmark(SynthConfig.preset('tiny'))


def _cli(args, env=None, timeout=300):
    "`avsl_dmt` in a fresh process (the test session's cache, so the tiny benchmark is built once)."
    return subprocess.run([sys.executable, '-m', 'avsl_nbdev.dmt_cli', *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _empty(d) -> bool: return not d.exists() or not any(d.iterdir())


# --- types, ranges and names, in every config class ----------------------------------------------------------------

@pytest.mark.parametrize('make, field', [
    (lambda: DMTConfig.preset('tiny', labeled=True), 'labeled'), (lambda: DMTConfig.preset('tiny', stage2_epochs=True), 'stage2_epochs'),
    (lambda: DMTConfig.preset('tiny', dim=128.0), 'dim'), (lambda: DMTConfig.preset('tiny', batch_size=16.0), 'batch_size'),
    (lambda: DMTConfig.preset('tiny', num_workers=1.0), 'num_workers'), (lambda: DMTConfig.preset('tiny', stage2_epochs=2.0), 'stage2_epochs'),
    (lambda: DMTConfig.preset('tiny', box_weight=float('inf')), 'box_weight'), (lambda: DMTConfig.preset('tiny', weight_decay=1e999), 'weight_decay'),
    (lambda: DMTConfig.preset('tiny', contrastive_weight=float('inf')), 'contrastive_weight'),
    (lambda: DMTConfig.preset('tiny', unsup_weight=1e308), 'unsup_weight'), (lambda: DMTConfig.preset('tiny', seed=-1), 'seed'),
    (lambda: DMTConfig.preset('tiny', seed=2 ** 32), 'seed'), (lambda: DMTConfig.preset('tiny', labeled_seed=-1), 'labeled_seed'),
    (lambda: DMTConfig.preset('tiny', device='meta'), 'device'), (lambda: DMTConfig.preset('tiny', lr=float('nan')), 'lr'),
    (lambda: TrainConfig(epochs=2.0), 'epochs'), (lambda: TrainConfig(labeled=True), 'labeled'), (lambda: TrainConfig(seed=-3), 'seed'),
    (lambda: TrainConfig(weight_decay=float('inf')), 'weight_decay'), (lambda: TrainConfig(device='meta'), 'device'),
    (lambda: ModelConfig(dim=True), 'dim'), (lambda: ModelConfig(box_weight=float('inf')), 'box_weight'),
    (lambda: ModelConfig(contrastive_weight=5000.0), 'contrastive_weight'),
    (lambda: SynthConfig.preset('tiny', n_train=100.0), 'n_train'), (lambda: SynthConfig.preset('tiny', seed=-1), 'seed'),
    (lambda: SynthConfig.preset('tiny', snr_db=float('nan')), 'snr_db')])
def test_config_types_and_ranges(make, field):
    with pytest.raises(ConfigError, match=rf'\.{field} = '): make()


def test_ablation_config_and_cli_refuse_the_same(capsys):
    from avsl_nbdev.ablations import AblationConfig, main as abl_main
    with pytest.raises(ConfigError, match='seeds'): AblationConfig.preset('tiny', seeds=True)
    with pytest.raises(ConfigError, match='seeds'): AblationConfig.preset('tiny', seeds=2.0)
    with pytest.raises(ConfigError, match='DMTConfig.unsup_weight'): AblationConfig.preset('tiny', dmt=dict(unsup_weight=1e308))
    with pytest.raises(SystemExit) as e: abl_main(['--preset', 'tiny', '--seeds', '0'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count('\n') == 1 and 'seeds' in err


def test_device_must_exist():
    assert check_device('cpu') == 'cpu' and check_device('auto') == 'auto'
    with pytest.raises(ConfigError, match='no such device'): check_device('cuda:64')
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match='no such device'): check_device('cuda')
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match='no such device'): check_device('mps')


# --- the command line: one line, exit 2, nothing written ------------------------------------------------------------

@pytest.mark.parametrize('args', [
    ['--set', 'device=meta'], ['--set', 'device=cuda:63'], ['--set', 'dim=128.0'], ['--set', 'labeled=True'],
    ['--set', 'stage2_epochs=True'], ['--set', 'box_weight=1e999'], ['--set', 'unsup_weight=1e308'], ['--seed', '-1'],
    ['--seed', '4294967296'], ['--set', 'labeled_seed=-1'], ['--labeled', 'inf'], ['--labeled', 'nan'],
    ['--seeds', '-1'], ['--seeds', '3'], ['--set', 'visual_weights=/etc/hostname']])
def test_cli_refuses_before_writing(args, tmp_path, capsys):
    out = tmp_path / 'run'
    with pytest.raises(SystemExit) as e: main(['--preset', 'tiny', '--out', str(out), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count('\n') == 1 and 'Traceback' not in err, err
    assert _empty(out)


def test_cli_fresh_process_device_and_environment(tmp_path):
    "As a user meets them: a missing device, bad thread settings — one line, exit 2, nothing written."
    cases = [(['--set', 'device=cuda' if not torch.cuda.is_available() else 'cuda:63'], {}), ([], {'AVSL_CPU_THREADS': 'abc'}),
             ([], {'AVSL_CPU_THREADS': '0'}), (['--set', 'labeled=True'], {})]
    for k, (args, env) in enumerate(cases):
        out = tmp_path / f'run{k}'
        p = _cli(['--preset', 'tiny', '--out', str(out), *args], env)
        assert p.returncode == 2 and p.stderr.strip().count('\n') == 0 and 'Traceback' not in p.stderr, p.stderr
        assert _empty(out), list(out.iterdir())


# --- run folders ------------------------------------------------------------------------------------------------------

def test_no_resume_never_leaves_old_checkpoints_under_a_new_record(bench, tmp_path):
    cfg = DMTConfig.preset('tiny', **SMALL)
    old = train(cfg, bench, out_dir=tmp_path, log=QUIET)['history']['stage2']
    # a --no-resume run that fails before its first checkpoint (it diverges in its first epoch)
    bad = dataclasses.replace(cfg, tau=0.7, lr=1e12)
    with pytest.raises(FloatingPointError): train(bad, bench, out_dir=tmp_path, resume=False, log=QUIET)
    assert not (tmp_path / 'teacher_a' / 'last.pt').exists() and not (tmp_path / 'stage2' / 'last.pt').exists()
    # the corrected command trains a tau = 0.7 run; it does not return the old tau = 0.5 model
    new = train(dataclasses.replace(cfg, tau=0.7), bench, out_dir=tmp_path, log=QUIET)
    assert read_run_config(tmp_path)['tau'] == 0.7 and new['model'].cfg.tau == 0.7
    strip = lambda rows: [{k: v for k, v in r.items() if k != 'seconds'} for r in rows]
    assert strip(new['history']['stage2']) != strip(old)


def test_missing_records_refused(bench, tmp_path):
    cfg = DMTConfig.preset('tiny', **SMALL)
    train(cfg, bench, out_dir=tmp_path, log=QUIET)
    (tmp_path / 'data.json').unlink()
    with pytest.raises(RunFolderError, match=r'data\.json is missing'): train(cfg, bench, out_dir=tmp_path, log=QUIET)
    other = load_benchmark(SynthConfig.preset('tiny', seed=1))
    with pytest.raises(RunFolderError, match=r'data\.json is missing'): train(cfg, other, out_dir=tmp_path, log=QUIET)
    assert not (tmp_path / 'data.json').exists()                          # nothing recorded for the other data
    (tmp_path / 'dmt_config.json').unlink()
    with pytest.raises(RunFolderError, match=r'dmt_config\.json is missing'): check_out_dir(cfg, tmp_path, bench=bench)


def test_history_files_restored_on_resume(bench, tmp_path):
    cfg = DMTConfig.preset('tiny', **SMALL)
    train(cfg, bench, out_dir=tmp_path, log=QUIET)
    want = (tmp_path / 'stage2' / 'history.csv').read_text()
    (tmp_path / 'stage2' / 'history.csv').unlink(); (tmp_path / 'teacher_a' / 'history.json').unlink()
    train(cfg, bench, out_dir=tmp_path, log=QUIET)
    assert (tmp_path / 'stage2' / 'history.csv').read_text() == want and (tmp_path / 'teacher_a' / 'history.json').exists()


@pytest.mark.parametrize('record, match', [('[1, 2]', 'holds a list'), ('{"tau": 0.5, "colour": 3}', "does not know: \\['colour'\\]"),
                                           ('{"tau": "high"}', 'not a valid DMTConfig')])
def test_malformed_run_record_named(tmp_path, record, match):
    from avsl_nbdev.explorer import load_dmt_run
    (tmp_path / 'dmt_config.json').write_text(record)
    with pytest.raises(FileFormatError, match=rf'dmt_config\.json.*{match}'): load_dmt_run(tmp_path, log=QUIET)


def test_load_dmt_run_reads_its_data_from_the_folder(bench, tmp_path, monkeypatch):
    "A tiny folder opened without data= loads the tiny benchmark its data.json names — never the cpu preset's."
    from avsl_nbdev import data as D
    from avsl_nbdev.explorer import load_dmt_run
    cfg = DMTConfig.preset('tiny', **SMALL)
    train(cfg, SynthConfig.preset('tiny'), out_dir=tmp_path, log=QUIET)
    assert json.loads((tmp_path / 'data.json').read_text())['synth'] == dataclasses.asdict(SynthConfig.preset('tiny'))
    seen = []
    real = D.load_benchmark
    monkeypatch.setattr('avsl_nbdev.dmt.load_benchmark', lambda c=None, *a, **k: seen.append(c) or real(c, *a, **k))
    r = load_dmt_run(tmp_path, log=QUIET)
    assert seen == [SynthConfig.preset('tiny')] and len(r['history']['stage2']) == 1


# --- divergence: BatchNorm statistics count -------------------------------------------------------------------------

def test_non_finite_batchnorm_statistics_are_divergence():
    from avsl_nbdev.encoders import SmallCNN
    m = SmallCNN()
    check_finite(m, torch.tensor(1.0), 1, 1e-3)
    m.body[0][1].running_var[3] = float('inf')
    with pytest.raises(FloatingPointError, match='BatchNorm'): check_finite(m, torch.tensor(1.0), 1, 1e-3)


def test_diverged_model_never_saved(bench, tmp_path):
    cfg = DMTConfig.preset('tiny', **SMALL, lr=1e6)
    with pytest.raises(FloatingPointError): train(cfg, bench, out_dir=tmp_path, log=QUIET)
    for f in tmp_path.rglob('*.pt'):
        ck = torch.load(f, weights_only=False)
        assert all(torch.isfinite(v).all() for v in ck['model'].values() if torch.is_tensor(v) and v.is_floating_point()), f


# --- real audio --------------------------------------------------------------------------------------------------------

def test_nan_audio_is_an_error_and_short_clips_are_counted(tmp_path):
    import soundfile as sf
    from avsl_nbdev.realdata import RealAVDataset, RealDataError, load_wav, write_example
    ids = write_example(tmp_path, 'flickr', n=4, seconds=4.0)
    wav = tmp_path / 'audio' / f'{ids[0]}.wav'
    x, sr = sf.read(str(wav), dtype='float32')
    sf.write(str(wav), np.full_like(x, np.nan), sr, subtype='FLOAT')
    with pytest.raises(RealDataError, match=rf'{ids[0]}\.wav: audio has .* non-finite samples'): load_wav(wav)
    with pytest.raises(RealDataError, match=rf'{ids[0]}\.wav'): RealAVDataset(tmp_path, ids, 'flickr').validate()
    sf.write(str(wav), x[: len(x) // 3], sr)                             # 1.3 s: shorter than the 3-s clip
    sf.write(str(tmp_path / 'audio' / f'{ids[1]}.wav'), x[: len(x) // 2], sr)
    ds = RealAVDataset(tmp_path, ids, 'flickr')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        ds.validate()
    msgs = [str(m.message) for m in w]
    assert sum('was tiled' in m for m in msgs) == 1                       # the first short clip, once
    assert any('2 of 4 clips are shorter than 3 s and were tiled' in m for m in msgs), msgs
    assert ds.tiled == {ids[0], ids[1]}
