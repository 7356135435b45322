"""Dual Mean-Teacher: filter, IPL and EMA against hand-computed cases, weak-to-strong geometry, the DMT step,
a small end-to-end run that beats its stage 1 on validation, exact resume and the command line."""
import json, subprocess, sys
import pytest
import torch
import torch.nn as nn

from avsl_nbdev.core import ConfigError
from avsl_nbdev.data import AVSLDataset, SynthConfig, collate_av, boxes_to_mask, load_benchmark
from avsl_nbdev.contrastive import build_model
from avsl_nbdev.teachers import mask_iou, repeat_to, teacher_configs
from avsl_nbdev.filtering import consensus, label_quality, accepted_stats, filter_sweep
from avsl_nbdev.ipl import combine_masks
from avsl_nbdev.ema import ema_update, random_affine, warp, strong_view, transform_boxes, StrongAug
from avsl_nbdev.dmt import DMTConfig, DualMeanTeacher, train, stage2_indices, model_configs
from avsl_nbdev.dmt_cli import _parse_sets, main


def _box(H, W, y0, y1, x0, x1):
    m = torch.zeros(H, W, dtype=torch.bool); m[y0:y1, x0:x1] = True; return m


def test_consensus_by_hand():
    # A: rows 0-1, cols 0-1 (4 px); B: rows 0-1, cols 1-3 (6 px); shared 2 px -> IoU 2/8
    A = _box(4, 4, 0, 2, 0, 2).float()[None]; B = _box(4, 4, 0, 2, 1, 4).float()[None] * 0.8
    B[0, 3, 3] = 1.0                                          # B's maximum elsewhere: still >= delta at 0.5 -> 7 px
    acc, iou, ma, mb = consensus(A, B, delta=0.5, tau=0.25)
    assert ma.sum() == 4 and mb.sum() == 7
    assert iou.item() == pytest.approx(2 / 9)
    assert not acc.item()
    assert consensus(A, B, 0.5, 0.2)[0].item()
    assert consensus(A, B, 0.9, 0.0)[1].item() == pytest.approx(0.0)          # B keeps only (3, 3)


def test_mask_iou_and_label_quality_by_hand():
    a = torch.stack([_box(4, 4, 0, 2, 0, 2), _box(4, 4, 0, 1, 0, 1), torch.zeros(4, 4, dtype=torch.bool)])
    b = torch.stack([_box(4, 4, 1, 3, 1, 3), _box(4, 4, 3, 4, 3, 4), torch.zeros(4, 4, dtype=torch.bool)])
    assert mask_iou(a, b).tolist() == pytest.approx([1 / 7, 0.0, 1.0])
    q = label_quality(a, b)             # pseudo-label a against truth b
    assert q['precision'].tolist() == pytest.approx([0.25, 0.0, 0.0])
    assert q['recall'].tolist() == pytest.approx([0.25, 0.0, 1.0])
    s = accepted_stats(torch.tensor([True, False, True]), a, b)
    assert (s['accepted'], s['good'], s['bad']) == (2, 1, 1)        # empty vs empty has IoU 1: good
    assert s['accept_rate'] == pytest.approx(2 / 3)


def test_filter_sweep_monotone_in_tau():
    g = torch.Generator().manual_seed(0)
    na, nb = torch.rand(20, 8, 8, generator=g), torch.rand(20, 8, 8, generator=g)
    gt = torch.rand(20, 8, 8, generator=g) > 0.7
    df = filter_sweep(na, nb, gt, [0.5], [0.0, 0.2, 0.4, 1.0])
    assert list(df['accepted']) == sorted(df['accepted'], reverse=True)
    assert df['accepted'].iloc[0] == 20


def test_ipl_rules_by_hand():
    ma = torch.tensor([[[1, 1, 0, 0]]], dtype=torch.bool); mb = torch.tensor([[[0, 1, 1, 0]]], dtype=torch.bool)
    assert combine_masks(ma, mb).int().tolist() == [[[0, 1, 0, 0]]]
    assert combine_masks(ma, mb, 'union').int().tolist() == [[[1, 1, 1, 0]]]
    assert combine_masks(ma, mb, 'a').int().tolist() == [[[1, 1, 0, 0]]]
    with pytest.raises(ConfigError, match='combine'): combine_masks(ma, mb, 'avg')


def test_ema_by_hand():
    t, s = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1)), nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        for p in t.parameters(): p.fill_(2.0)
        for p in s.parameters(): p.fill_(4.0)
        t[1].running_var.fill_(1.0); s[1].running_var.fill_(3.0); s[1].num_batches_tracked.fill_(5)
    ema_update(t, s, 0.75)
    assert all(torch.allclose(p, torch.full_like(p, 2.5)) for p in t.parameters())        # 0.75*2 + 0.25*4
    assert t[1].running_var.item() == pytest.approx(1.5) and t[1].num_batches_tracked.item() == 5
    assert all(torch.allclose(p, torch.full_like(p, 4.0)) for p in s.parameters())        # student untouched


def test_strong_view_carries_masks_exactly():
    H = W = 24
    cols, rows = torch.meshgrid(torch.arange(W, dtype=torch.float32), torch.arange(H, dtype=torch.float32), indexing='xy')
    coords = torch.stack([cols, rows])[None].repeat(16, 1, 1, 1)
    g = torch.Generator().manual_seed(3)
    mask = (torch.rand(16, 1, H, W, generator=g) > 0.6).float()
    torch.manual_seed(0)
    theta = random_affine(16, StrongAug(min_scale=0.3))
    assert (theta[:, 0, 0] < 0).any() and (theta[:, 0, 0] > 0).any()            # both flipped and unflipped samples
    src = warp(coords, theta, 'nearest').long()
    moved = warp(mask, theta, 'nearest')
    for i in range(16):
        assert torch.equal(moved[i, 0], mask[i, 0, src[i, 1], src[i, 0]])
    # strong_view warps image and mask with the same grid: re-use the RNG state
    img = torch.randn(16, 3, H, W)
    torch.manual_seed(0)
    _, m2, th2 = strong_view(img, mask, StrongAug(min_scale=0.3, p_jitter=0, p_gray=0, p_blur=0))
    assert torch.allclose(th2, theta) and torch.equal(m2, moved)


def test_transformed_boxes_match_warped_masks():
    H = W = 48
    box = torch.tensor([[10.0, 6.0, 30.0, 25.0]])
    torch.manual_seed(1)
    theta = random_affine(12, StrongAug(min_scale=0.4))
    for i in range(12):
        by_hand = boxes_to_mask(transform_boxes(box, theta[i], H, W), H, W)
        warped = warp(boxes_to_mask(box, H, W)[None, None].float(), theta[i:i + 1], 'nearest')[0, 0].to(torch.uint8)
        inter, union = (by_hand & warped).sum().item(), (by_hand | warped).sum().item()
        assert union > 0 and inter / union > 0.85, (i, inter, union)


def test_photometric_keeps_shapes_and_range():
    img = torch.randn(4, 3, 16, 16)
    out, m, _ = strong_view(img, torch.ones(4, 1, 16, 16), StrongAug())
    assert out.shape == img.shape and m.shape == (4, 1, 16, 16) and torch.isfinite(out).all()


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r'DMTConfig\.tau'): DMTConfig(tau=-0.1)
    with pytest.raises(ConfigError, match='must differ'): DMTConfig(audio_a='soundnet-small', audio_b='soundnet-small')
    with pytest.raises(ConfigError, match=r'DMTConfig\.eval_net'): DMTConfig(teachers=1, filter=False, combine='a', eval_net='teacher_b')
    with pytest.raises(ConfigError, match='DMTConfig field'): _parse_sets(['nope=1'])
    assert _parse_sets(['tau=0.3', 'combine=union']) == {'tau': 0.3, 'combine': 'union'}
    from avsl_nbdev.contrastive import ModelConfig
    with pytest.raises(ConfigError, match='must differ'): teacher_configs(ModelConfig(), ('R', 'R'))


def test_stage2_indices_mix():
    lab = torch.zeros(100, dtype=torch.bool); lab[:10] = True
    idx = stage2_indices(lab, 0.25)                         # 90 unlabeled, 10 labeled x 3 = 30 -> 25 %
    assert len(idx) == 120 and sorted(set(idx.tolist())) == list(range(100))
    assert (lab[torch.from_numpy(idx)].float().mean().item()) == pytest.approx(0.25)
    assert list(repeat_to([1, 2], 5)) == [1, 2, 1, 2, 1, 2]


def test_dmt_step_uses_truth_only_for_labeled(tiny_bench):
    cfg = DMTConfig.preset('tiny', object_pretrain=None, dim=16)
    torch.manual_seed(0)
    dmt = DualMeanTeacher(cfg, [build_model(m) for m in model_configs(cfg)])
    ds = AVSLDataset(tiny_bench['train'], view='weak')
    b = collate_av([ds[i] for i in range(8)])
    lab = torch.tensor([True] * 3 + [False] * 5)
    p = dmt.pseudo_labels(b, lab)
    assert torch.equal(p['target'][:3], b['mask'][:3, 0] > 0)
    assert torch.equal(p['target'][3:], p['pl'][3:])
    assert torch.equal(p['use'], lab | p['accept']) and not (p['accept'] & lab).any()
    assert torch.equal(p['pl'], p['masks'][0] & p['masks'][1])
    # the truth of unlabeled frames must not change the losses: scramble it and compare
    b2 = dict(b, mask=b['mask'].clone()); b2['mask'][3:] = 1 - b2['mask'][3:]
    torch.manual_seed(5); l1 = dmt.losses(b, lab)['loss']
    torch.manual_seed(5); l2 = dmt.losses(b2, lab)['loss']
    assert l1.item() == pytest.approx(l2.item(), rel=1e-6)
    # gradients reach both students, never the teachers
    l1.backward()
    assert all(p.grad is None for p in dmt.teachers.parameters())
    for s in dmt.students: assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in s.enc.audio.parameters())


def test_single_teacher_accepts_all_unlabeled(tiny_bench):
    cfg = DMTConfig.preset('tiny', object_pretrain=None, dim=16).single_teacher()
    torch.manual_seed(0)
    dmt = DualMeanTeacher(cfg, [build_model(m) for m in model_configs(cfg)])
    ds = AVSLDataset(tiny_bench['train'], view='weak')
    b = collate_av([ds[i] for i in range(6)])
    lab = torch.tensor([True, False, False, False, False, False])
    p = dmt.pseudo_labels(b, lab)
    assert torch.equal(p['accept'], ~lab) and len(dmt.teachers) == 1


# An easy benchmark where learning is visible within a minute: 64 px, one large object per frame, 320 training
# frames of which 64 labeled. Stage 1 is deliberately short (4 steps) so that stage 2 has something to add; a fast
# EMA (0.9) lets the evaluated teacher follow its student within the few steps of the test.
SMALL = dict(image_size=64, size_dist='loguniform', n_train=320, n_val=64, n_test=16, n_variants=6, min_objects=1, max_objects=1,
             min_size=0.3, max_size=0.6, silent_frac=0.0, offscreen_frac=0.0)


@pytest.fixture(scope='module')
def small_bench():
    return load_benchmark(SynthConfig(**SMALL))


def _small_cfg(**kw):
    return DMTConfig.preset('tiny', labeled=64, stage1_epochs=2, stage1_samples=64, stage2_epochs=2, batch_size=32,
                            dim=32, lr=1e-3, object_pretrain=None, labeled_frac=0.5, ema=0.9, **kw)


def test_dmt_end_to_end_improves_over_stage1(small_bench, tmp_path):
    r = train(_small_cfg(), small_bench, out_dir=tmp_path, log=lambda s: None)
    s1 = max(h['val_auc'] for h in r['history']['teacher_a'])
    s2 = max(h['val_auc'] for h in r['history']['stage2'])
    h = r['history']['stage2']
    assert all(0 <= row['train_pl_accept_rate'] <= 1 for row in h) and sum(row['train_pl_accepted'] for row in h) > 0
    assert s2 > s1, (s1, s2)
    for f in ('teacher_a/best.pt', 'teacher_b/last.pt', 'stage2/last.pt', 'stage2/history.csv', 'dmt_config.json'):
        assert (tmp_path / f).exists(), f


def test_dmt_resume_equals_uninterrupted(tiny_bench, tmp_path):
    cfg = DMTConfig.preset('tiny', dim=16, object_pretrain=None)
    full = train(cfg, tiny_bench, out_dir=tmp_path / 'a', log=lambda s: None)
    train(DMTConfig.preset('tiny', dim=16, object_pretrain=None, stage2_epochs=1), tiny_bench, out_dir=tmp_path / 'b', log=lambda s: None)
    res = train(cfg, tiny_bench, out_dir=tmp_path / 'b', log=lambda s: None)        # resumes stage 2 at epoch 1
    last_a = torch.load(tmp_path / 'a/stage2/last.pt', weights_only=False)['model']
    last_b = torch.load(tmp_path / 'b/stage2/last.pt', weights_only=False)['model']
    assert last_a.keys() == last_b.keys()
    for k in last_a: assert torch.equal(last_a[k], last_b[k]), k
    assert [r['val_auc'] for r in full['history']['stage2']] == [r['val_auc'] for r in res['history']['stage2']]


def test_cli_smoke(tmp_path):
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'avsl_nbdev.dmt_cli', '--preset', 'tiny', '--out', str(out),
           '--set', 'stage1_epochs=1', '--set', 'stage2_epochs=1', '--set', 'object_pretrain=None', '--set', 'dim=16']
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads(p.stdout[p.stdout.index('{'):p.stdout.index('}') + 1])
    assert summary['best_epoch'] == 1 and 0 <= summary['val_auc'] <= 1
    assert (out / 'stage2' / 'history.json').exists()
    bad = subprocess.run([sys.executable, '-m', 'avsl_nbdev.dmt_cli', '--preset', 'tiny', '--set', 'tau=7'], capture_output=True, text=True)
    assert bad.returncode != 0 and 'DMTConfig.tau' in bad.stderr


def test_cli_parsing_and_stale_out_dir(tmp_path):
    from avsl_nbdev.dmt import check_out_dir
    assert _parse_sets(['filter=false', 'amp=TRUE', 'object_pretrain=none', 'seed=3']) == \
        {'filter': False, 'amp': True, 'object_pretrain': None, 'seed': 3}
    with pytest.raises(ConfigError, match='true or false'): _parse_sets(['filter=maybe'])
    cfg = DMTConfig.preset('tiny')
    check_out_dir(cfg, tmp_path)                                              # first use: writes dmt_config.json
    (tmp_path / 'teacher_a').mkdir(); torch.save({'epoch': 1}, tmp_path / 'teacher_a' / 'last.pt')   # it has trained: only then is it protected
    check_out_dir(DMTConfig.preset('tiny', stage2_epochs=5), tmp_path)        # more epochs: a legitimate resume
    with pytest.raises(ConfigError, match='tau=0.5'): check_out_dir(DMTConfig.preset('tiny', tau=0.7), tmp_path)
    check_out_dir(DMTConfig.preset('tiny', tau=0.7), tmp_path, resume=False)  # --no-resume overwrites
    with pytest.raises(SystemExit): main(['--preset', 'tiny', '--labeled', '1.5'])             # one line, exit 2


def test_demo_prints_this_run(capsys):
    from avsl_nbdev.dmt_cli import demo
    tab = demo('tiny', seed=0, log=lambda s: None, object_pretrain=None, dim=16, stage1_epochs=1, stage2_epochs=1)
    assert list(tab.index) == ['supervised-only (D_l, stage 1)', 'DMT (stage 2)'] and (tab['auc'].between(0, 1)).all()
    assert 'this run: preset tiny, seed 0' in capsys.readouterr().out


def test_warm_start_teachers_start_from_the_self_supervised_runs(tiny_cfg, tiny_bench, tmp_path):
    "DMTConfig.warm_start: each stage-1 teacher starts from the base method's self-supervised run on its own encoders."
    import dataclasses
    from avsl_nbdev.dmt import teacher_runs, stage1, warm_start_runs
    from avsl_nbdev.train import load_run_model
    cfg = DMTConfig.preset('tiny', dim=16, object_pretrain=None, warm_start='tiny', stage1_epochs=1, lr=1e-9, weight_decay=0.0)
    with pytest.raises(ConfigError, match='warm_start'): train(cfg, tiny_bench, out_dir=tmp_path / 'x')   # needs the SynthConfig
    with pytest.raises(ConfigError, match='DMTConfig.warm_start'): DMTConfig(warm_start='huge')
    cold = [r[3] for r in teacher_runs(dataclasses.replace(cfg, warm_start=None), tiny_bench)]
    warm = [r[3] for r in teacher_runs(cfg, tiny_bench, synth=tiny_cfg)]
    assert not set(cold) & set(warm)                                       # a warm start is another stage-1 run
    runs = warm_start_runs(cfg, tiny_cfg)
    assert [m.audio for _, m, _ in runs] == [cfg.audio_a, cfg.audio_b] and all(m.box_weight == 0 for _, m, _ in runs)
    teachers, hists = stage1(cfg, tiny_bench, out_dir=tmp_path, log=lambda s: None, synth=tiny_cfg)
    assert [[r['epoch'] for r in h] for h in hists] == [[0, 1], [0, 1]]   # the start is a selection candidate (epoch 0)
    for t, (name, m, tc) in zip(teachers, runs):                          # lr 1e-9: stage 1 leaves the warm start in place
        ss = load_run_model({'name': name, 'synth': dataclasses.asdict(tiny_cfg), 'model': dataclasses.asdict(m), 'train': dataclasses.asdict(tc)})
        fresh = build_model(m)
        p, q, f = dict(t.named_parameters()), dict(ss.named_parameters()), dict(fresh.named_parameters())
        assert p.keys() == q.keys()
        assert all(torch.allclose(p[k], q[k], atol=1e-6) for k in p)
        assert not all(torch.allclose(q[k], f[k], atol=1e-6) for k in q)   # the self-supervised run did train
    # stage1_epochs = 0: no stage 1, the teachers are the self-supervised runs exactly; refused without a warm start
    with pytest.raises(ConfigError, match='DMTConfig.stage1_epochs'): DMTConfig.preset('tiny', stage1_epochs=0)
    zero = dataclasses.replace(cfg, stage1_epochs=0)
    teachers, hists = stage1(zero, tiny_bench, out_dir=tmp_path / 'zero', log=lambda s: None, synth=tiny_cfg)
    assert hists == [[], []] and not (tmp_path / 'zero').exists()                  # nothing trained, nothing written
    for t, (name, m, tc) in zip(teachers, runs):
        ss = load_run_model({'name': name, 'synth': dataclasses.asdict(tiny_cfg), 'model': dataclasses.asdict(m), 'train': dataclasses.asdict(tc)})
        assert all(torch.equal(v, ss.state_dict()[k]) for k, v in t.state_dict().items())


def test_building_configs_never_pretrains(tmp_path, monkeypatch):
    "Pretraining the visual CNN is an explicit step (`visual_weights(cfg, pretrain=True)`, which `train` takes first)."
    import avsl_nbdev.encoders as enc
    from avsl_nbdev.dmt import visual_weights
    monkeypatch.setenv('AVSL_CACHE', str(tmp_path))                       # nothing cached: only the committed trunks exist
    monkeypatch.setattr(enc, 'pretrain_visual', lambda *a, **k: pytest.fail('pretrained while building configs'))
    shipped = model_configs(DMTConfig.preset('tiny'))
    assert shipped[0].visual_weights == str(enc.committed_weights(enc.cnn_weights_name(enc.ObjectPretrainConfig.preset('tiny'))))
    other = DMTConfig.preset('tiny', object_pretrain='gpu')                 # the gpu preset's CNN is not committed
    with pytest.raises(ConfigError, match='does not exist yet'): model_configs(other)
    with pytest.raises(ConfigError, match='does not exist yet'): visual_weights(other)
    assert not any(tmp_path.rglob('*.pt'))


def test_audio_pretrain_starts_v_and_s_not_r(tmp_path):
    "`audio_pretrain` starts V from the sound classifier and S from the frame predictor (chapter 3), R from scratch; old keys stay."
    from avsl_nbdev.dmt import dmt_key, LATE_FIELDS
    from avsl_nbdev.contrastive import model_key
    from avsl_nbdev.encoders import AudioPretrainConfig, SoundNetPretrainConfig, pretrained_audio, pretrained_soundnet
    plain, pre = DMTConfig.preset('tiny'), DMTConfig.preset('tiny', audio_pretrain='tiny')
    a, b = model_configs(pre)
    assert (a.audio, b.audio) == ('vggish-small', 'soundnet-small')
    assert a.audio_weights == str(pretrained_audio(AudioPretrainConfig.preset('tiny'), train=False))
    assert b.audio_weights == str(pretrained_soundnet(SoundNetPretrainConfig.preset('tiny'), train=False))
    assert all(m.audio_weights is None for m in model_configs(plain))
    for m in (a, b):
        net, saved = build_model(m).enc.audio, torch.load(m.audio_weights)
        assert all(torch.equal(net.state_dict()[k], v) for k, v in saved.items())     # the model starts from the saved weights
    r, s = model_configs(DMTConfig.preset('tiny', audio_a='R-small', audio_b='S-small', audio_pretrain='tiny'))
    assert r.audio_weights is None and s.audio_weights == b.audio_weights                 # R from scratch, as in EZ-VSL
    assert 'audio_pretrain' not in dmt_key(plain) and dmt_key(pre)['audio_pretrain'] == 'tiny' and LATE_FIELDS['audio_pretrain'] is None
    assert 'audio_weights' not in model_key(model_configs(plain)[0])                   # runs without it keep their keys
    with pytest.raises(ConfigError, match='DMTConfig.audio_pretrain'):
        DMTConfig.preset('tiny', audio_a='resnet-small', audio_b='resnet', audio_pretrain='tiny')   # nothing to pretrain


def test_train_with_pretrained_audio(tiny_bench):
    cfg = DMTConfig.preset('tiny', audio_pretrain='tiny', stage1_epochs=1, stage2_epochs=1, dim=16)
    res = train(cfg, tiny_bench, log=lambda *a, **k: None)
    assert len(res['history']['stage2']) == 1 and res['model'].cfg.audio_pretrain == 'tiny'


def test_stage1_box_weight_is_stage1s_own(tiny_bench):
    "`stage1_box_weight` weighs the teachers' box loss; the students of stage 2 train with `box_weight`; old keys stay."
    from avsl_nbdev.dmt import dmt_key, LATE_FIELDS, teacher_runs
    plain, own = DMTConfig.preset('tiny'), DMTConfig.preset('tiny', stage1_box_weight=4.0)
    assert [m.box_weight for m in model_configs(plain)] == [1.0, 1.0] and [m.box_weight for m in model_configs(own)] == [4.0, 4.0]
    assert 'stage1_box_weight' not in dmt_key(plain) and LATE_FIELDS['stage1_box_weight'] is None
    same = DMTConfig.preset('tiny', stage1_box_weight=1.0)             # the same teachers as the default: the same folders
    assert [r[3] for r in teacher_runs(plain, tiny_bench)] == [r[3] for r in teacher_runs(same, tiny_bench)]
    assert teacher_runs(own, tiny_bench)[0][3] != teacher_runs(plain, tiny_bench)[0][3]
    teachers = [build_model(m) for m in model_configs(own)]
    d = DualMeanTeacher(own, teachers)
    assert [s.cfg.box_weight for s in d.students] == [1.0, 1.0] and [t.cfg.box_weight for t in d.teachers] == [4.0, 4.0]
    with pytest.raises(ConfigError, match='DMTConfig.stage1_box_weight'): DMTConfig.preset('tiny', stage1_box_weight=0.0)


def test_bf16_runs_hold_their_arithmetic_in_their_keys(tiny_bench, monkeypatch):
    "A run under bf16 autocast (here: a CPU that pretends to multiply bf16) gets its own folders; fp32 runs' keys do not move."
    import avsl_nbdev.train as T
    from avsl_nbdev.dmt import teacher_runs, stage2_folder
    folders = lambda c: ([r[3] for r in teacher_runs(c, tiny_bench)], stage2_folder(c, tiny_bench))
    on, off = DMTConfig.preset('tiny', device='cpu'), DMTConfig.preset('tiny', device='cpu', amp=False)
    monkeypatch.setattr(T, 'native_bf16', lambda: False)
    fp32_on, fp32_off = folders(on), folders(off)
    monkeypatch.setattr(T, 'native_bf16', lambda: True)
    bf16_on, bf16_off = folders(on), folders(off)
    assert T.arithmetic_key('cpu', True) == {'arithmetic': T.ARITHMETIC} and T.arithmetic_key('cpu', False) == {}
    assert set(fp32_on[0]).isdisjoint(bf16_on[0]) and fp32_on[1] != bf16_on[1]
    assert bf16_off == fp32_off                                  # amp off: fp32 on any CPU, one key
