"Run folders: data fingerprint, schedule, validation before writing, lock, CLI errors and divergence exit codes."
import dataclasses
import json
import subprocess
import sys

import pytest

from avsl_nbdev.core import ConfigError
from avsl_nbdev.data import SynthConfig, load_benchmark
from avsl_nbdev import dmt, dmt_cli
from avsl_nbdev.dmt import DMTConfig, RunFolderError, check_out_dir, data_key, out_dir_lock, train, validate_run
from avsl_nbdev.dmt_cli import compare, main

QUIET = lambda *a, **k: None


@pytest.fixture(scope='module')
def bench():
    return load_benchmark(SynthConfig.preset('tiny'))


@pytest.fixture(scope='module')
def trained(bench, tmp_path_factory):
    "A finished tiny run folder (1 + 2 epochs, small nets)."
    d = tmp_path_factory.mktemp('run')
    cfg = DMTConfig.preset('tiny', object_pretrain=None, dim=16, stage1_epochs=1, stage2_epochs=2)
    train(cfg, bench, out_dir=d, log=QUIET)
    return cfg, d


@pytest.mark.parametrize('bad, field', [(dict(eval_batch_size=0), 'eval_batch_size'), (dict(p_blur=1.5), 'p_blur'),
                                        (dict(p_gray=-0.1), 'p_gray'), (dict(jitter=1.0), 'jitter'),
                                        (dict(strong_min_scale=0.0), 'strong_min_scale'), (dict(audio_a='wav2vec'), 'audio_a'),
                                        (dict(audio_b='nope-small'), 'audio_b'), (dict(visual='vit'), 'visual'),
                                        (dict(object_pretrain='huge'), 'object_pretrain'), (dict(dim=0), 'dim'),
                                        (dict(stage1_samples=8), 'stage1_samples'), (dict(num_workers=-1), 'num_workers'),
                                        (dict(weight_decay=-1.0), 'weight_decay'), (dict(visual_weights='/nonexistent.pt'), 'visual_weights')])
def test_every_field_checked_at_construction(bad, field):
    with pytest.raises(ConfigError, match=f'DMTConfig.{field}'): DMTConfig.preset('tiny', **bad)


def test_presets_pass_their_own_checks():
    for p in ('tiny', 'cpu', 'gpu'):
        cfg = DMTConfig.preset(p)
        one = cfg.single_teacher()                                   # the baseline is a valid config too, and differs as documented
        assert (cfg.teachers, cfg.filter, one.teachers, one.filter, one.combine) == (2, True, 1, False, 'a')
        with pytest.raises(ConfigError, match='DMTConfig.labeled'): dataclasses.replace(cfg, labeled=-1)


def test_data_errors_before_anything_is_written(bench, tmp_path):
    out = tmp_path / 'run'
    with pytest.raises(ConfigError, match=r'DMTConfig\.labeled = 100.*96'):
        train(DMTConfig.preset('tiny', labeled=100), bench, out_dir=out, log=QUIET)
    assert not out.exists()
    with pytest.raises(ConfigError, match='all 96 training frames'): validate_run(DMTConfig.preset('tiny', labeled=96), bench)
    with pytest.raises(ConfigError, match='DMTConfig.unlabeled'): validate_run(DMTConfig.preset('tiny', unlabeled=500), bench)
    with pytest.raises(ConfigError, match='DMTConfig.batch_size'):
        validate_run(DMTConfig.preset('tiny', unlabeled=4, labeled_frac=0.1, batch_size=64, stage1_samples=64), bench)
    assert validate_run(DMTConfig.preset('tiny'), bench).sum() == 32


def test_folder_records_its_data_and_refuses_other_data(bench, trained):
    cfg, d = trained
    assert json.loads((d / 'data.json').read_text()) == data_key(bench)
    rec = (d / 'dmt_config.json').read_text()
    other = {k: v + 'x' for k, v in data_key(bench).items()}

    class Other(dict):
        pass
    fake = Other(bench)
    import avsl_nbdev.dmt as m
    orig = m.data_key
    m.data_key = lambda b: other if b is fake else orig(b)
    try:
        with pytest.raises(RunFolderError, match='other data'): train(cfg, fake, out_dir=d, log=QUIET)
    finally:
        m.data_key = orig
    assert (d / 'dmt_config.json').read_text() == rec


def test_changed_schedule_refused_and_record_stays_true(bench, trained):
    cfg, d = trained
    rec = (d / 'dmt_config.json').read_text()
    with pytest.raises(RunFolderError, match='trained for 2 stage-2 epochs'):
        train(dataclasses.replace(cfg, stage2_epochs=1), bench, out_dir=d, log=QUIET)
    with pytest.raises(RunFolderError, match='from 1-epoch teachers'):
        train(dataclasses.replace(cfg, stage1_epochs=2), bench, out_dir=d, log=QUIET)
    assert (d / 'dmt_config.json').read_text() == rec
    assert json.loads(rec)['stage2_epochs'] == 2
    # the same schedule reuses the finished run without training
    r = train(cfg, bench, out_dir=d, log=QUIET)
    assert len(r['history']['stage2']) == 2


def test_stage1_fewer_epochs_refused(bench, tmp_path):
    cfg = DMTConfig.preset('tiny')
    check_out_dir(dataclasses.replace(cfg, stage1_epochs=3), tmp_path, bench=bench)
    (tmp_path / 'teacher_a').mkdir()
    import torch
    torch.save({'epoch': 3}, tmp_path / 'teacher_a' / 'last.pt')
    with pytest.raises(RunFolderError, match='teacher A trained for 3 epochs'): check_out_dir(cfg, tmp_path, bench=bench)
    (tmp_path / 'teacher_a' / 'last.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(RunFolderError, match=r'teacher_a/last\.pt: unreadable checkpoint'): check_out_dir(cfg, tmp_path, bench=bench)


def test_lock_refuses_second_user(bench, tmp_path):
    with out_dir_lock(tmp_path):
        with pytest.raises(RunFolderError, match='in use by another process'):
            train(DMTConfig.preset('tiny'), bench, out_dir=tmp_path, log=QUIET)
        assert not (tmp_path / 'dmt_config.json').exists()
    with out_dir_lock(tmp_path): pass                                          # released


def test_compare_needs_a_seed(capsys):
    with pytest.raises(ConfigError, match='seeds'): compare('tiny', seeds=())
    with pytest.raises(SystemExit) as e: main(['--preset', 'tiny', '--compare', '--seeds', '0'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('avsl_dmt: error: --seeds 0') and err.count('\n') == 1


def test_cli_config_error_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as e: main(['--preset', 'tiny', '--out', str(tmp_path / 'x'), '--set', 'eval_batch_size=0'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'DMTConfig.eval_batch_size = 0' in err and 'Traceback' not in err
    assert not (tmp_path / 'x').exists()


@pytest.mark.parametrize('exc, code', [(FloatingPointError('non-finite loss at epoch 1'), 1),
                                       (RuntimeError('stage 2: non-finite weights after step 3'), 1)])
def test_divergence_exits_nonzero(monkeypatch, capsys, tmp_path, exc, code):
    def boom(*a, **k): raise exc
    monkeypatch.setattr(dmt_cli, 'train', boom)
    with pytest.raises(SystemExit) as e: main(['--preset', 'tiny', '--out', str(tmp_path)])
    assert e.value.code == code
    err = capsys.readouterr().err
    assert err.startswith('avsl_dmt: training diverged:') and err.count('\n') == 1


def test_other_runtime_errors_keep_their_traceback(monkeypatch, tmp_path):
    def boom(*a, **k): raise RuntimeError('CUDA out of memory')
    monkeypatch.setattr(dmt_cli, 'train', boom)
    with pytest.raises(RuntimeError, match='out of memory'): main(['--preset', 'tiny', '--out', str(tmp_path)])


def test_cli_subprocess_one_line_exit_2():
    p = subprocess.run([sys.executable, '-m', 'avsl_nbdev.dmt_cli', '--preset', 'tiny', '--compare', '--seeds', '0'],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr.strip().count('\n') == 0 and 'Traceback' not in p.stderr, p.stderr


def test_other_benchmark_seed_refused(trained):
    "The issue's case, unmocked: a folder trained on seed-0 data is never resumed nor reused with seed-1 data."
    from avsl_nbdev.explorer import load_dmt_run
    cfg, d = trained
    rec = (d / 'dmt_config.json').read_text()
    with pytest.raises(RunFolderError, match='other data'):
        load_dmt_run(d, data=SynthConfig.preset('tiny', seed=1), log=QUIET)
    assert (d / 'dmt_config.json').read_text() == rec


def test_folder_without_checkpoint_can_be_taken_over(bench, tmp_path):
    "A run that failed before saving anything (divergence in its first epoch) does not block the corrected command."
    bad = DMTConfig.preset('tiny', object_pretrain=None, dim=16, stage1_epochs=1, lr=1e12)
    with pytest.raises(FloatingPointError): train(bad, bench, out_dir=tmp_path, log=QUIET)
    assert json.loads((tmp_path / 'dmt_config.json').read_text())['lr'] == 1e12
    good = dataclasses.replace(bad, lr=3e-4)
    check_out_dir(good, tmp_path, bench=bench)                       # accepted, and the record now tells the truth
    assert json.loads((tmp_path / 'dmt_config.json').read_text())['lr'] == 3e-4
    import torch
    (tmp_path / 'teacher_a').mkdir(exist_ok=True); torch.save({'epoch': 1}, tmp_path / 'teacher_a' / 'last.pt')
    with pytest.raises(RunFolderError, match='different lr'): check_out_dir(bad, tmp_path, bench=bench)


def test_cli_file_errors_one_line(monkeypatch, capsys, tmp_path):
    import torch
    (tmp_path / 'teacher_a').mkdir(); torch.save({'epoch': 1}, tmp_path / 'teacher_a' / 'last.pt')
    (tmp_path / 'dmt_config.json').write_text('{"method": "ezv')                 # a record cut short
    with pytest.raises(SystemExit) as e: main(['--preset', 'tiny', '--out', str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count('\n') == 1 and 'dmt_config.json is not valid JSON' in err, err

    def full(*a, **k): raise OSError(f"could not write {tmp_path / 'last.pt'} (OSError: [Errno 28] No space left on device)")
    monkeypatch.setattr(dmt_cli, 'train', full)
    with pytest.raises(SystemExit) as e: main(['--preset', 'tiny', '--out', str(tmp_path / 'y')])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count('\n') == 1 and 'No space left' in err and 'Traceback' not in err


def test_corrupt_visual_weights_named(tmp_path):
    from avsl_nbdev.core import FileFormatError
    from avsl_nbdev.encoders import load_local_weights, SmallCNN
    f = tmp_path / 'w.pt'
    f.write_bytes(b'\x80\x04garbage')
    with pytest.raises(FileFormatError, match='pretrained weights .*w.pt is unreadable'): load_local_weights(SmallCNN(), f)
    import torch
    torch.save([1, 2], f)
    with pytest.raises(FileFormatError, match='w.pt hold a list'): load_local_weights(SmallCNN(), f)
