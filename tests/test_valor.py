"""VALOR chapter: AVVP metrics against hand-computed cases and a slow loop reference, the HAN / VALOR losses against
element-wise loops, label elaboration by hand, the real-LLP readers on the fixture subset (errors name file and line),
the SynthLLP generator, and training on a small benchmark (loss goes down, beats the trivial baselines)."""
import math, warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from avsl_nbdev.core import ConfigError
from avsl_nbdev.valor import (
    AVVP_METRICS, HAN, LLP_CLASSES, LLP_FILES, LLPFormatError, LLPSynthConfig, ParserConfig, PromptTeacher, SegmentTeacher,
    avvp_metrics, choose_thresholds, dense_from_intervals, event_counts, evaluate, extract_events, gate_predictions, han_loss,
    harvest, label_quality, llp_annotations, load_llp_features, load_teacher, read_llp_dense, read_llp_weak, render_video,
    save_teacher, segment_counts, train_parser, valor_loss, video_events)

FIX = Path(__file__).parent / 'fixtures' / 'llp'


# ---------------------------------------------------------------- a slow, loop-by-loop reference of the AVVP evaluation
def _ref_events(seq):
    out, i, T = [], 0, len(seq)
    while i < T:
        if seq[i] == 1:
            j = i
            while j < T and seq[j] == 1: j += 1
            out.append((i, j)); i = j
        else: i += 1
    return out

def _ref_event_tp_fp_fn(p, g):
    ep, eg = _ref_events(p), _ref_events(g)
    vec = lambda e: np.array([1 if e[0] <= t < e[1] else 0 for t in range(len(p))])
    iou = lambda x, y: np.sum(vec(x) * vec(y)) / np.sum((vec(x) + vec(y)) > 0)
    tp = sum(1 for x in ep if any(iou(x, y) >= 0.5 for y in eg))
    fn = sum(1 for y in eg if not any(iou(y, x) >= 0.5 for x in ep))
    return tp, len(ep) - tp, fn

def _ref_f(counts):
    fs = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in counts if tp + fp != 0 or tp + fn != 0]
    return sum(fs) / len(fs) if fs else 1.0

def _ref_video(pa, pv, ga, gv, level):
    C = len(pa)
    cnt = (lambda p, g: [(int(np.sum(p[c] * g[c])), int(np.sum(p[c] * (1 - g[c]))), int(np.sum((1 - p[c]) * g[c]))) for c in range(C)]) \
        if level == 'seg' else (lambda p, g: [_ref_event_tp_fp_fn(list(p[c]), list(g[c])) for c in range(C)])
    ca, cv, cav = cnt(pa, ga), cnt(pv, gv), cnt(pa * pv, ga * gv)
    pooled = [tuple(x + y for x, y in zip(a, v)) for a, v in zip(ca, cv)]
    return _ref_f(ca), _ref_f(cv), _ref_f(cav), _ref_f(pooled)

def _ref_metrics(pa, pv, ga, gv):
    out = {}
    for lvl in ('seg', 'event'):
        per = np.array([_ref_video(pa[n], pv[n], ga[n], gv[n], lvl) for n in range(len(pa))])
        fa, fv, fav, fe = per.mean(0)
        out.update({f'{lvl}_A': 100 * fa, f'{lvl}_V': 100 * fv, f'{lvl}_AV': 100 * fav,
                    f'{lvl}_Type': 100 * (fa + fv + fav) / 3, f'{lvl}_Event': 100 * fe})
    return out


def test_metrics_match_slow_reference_on_random_cases():
    rng = np.random.default_rng(0)
    N, C, T = 40, 5, 10
    ga, gv = (rng.random((N, C, T)) < 0.25).astype(np.uint8), (rng.random((N, C, T)) < 0.25).astype(np.uint8)
    ga[:5] = 0; gv[:5] = 0                                                   # videos with no events at all
    pa, pv = (rng.random((N, C, T)) < 0.3).astype(np.uint8), (rng.random((N, C, T)) < 0.3).astype(np.uint8)
    pa[:3] = 0; pv[:3] = 0
    got, ref = avvp_metrics(pa, pv, ga, gv), _ref_metrics(pa, pv, ga, gv)
    assert list(got) == AVVP_METRICS
    for k in AVVP_METRICS: assert got[k] == pytest.approx(ref[k], abs=1e-9), k


def test_metrics_by_hand():
    C, T = 2, 10
    ga, gv, pa, pv = (np.zeros((3, C, T), np.uint8) for _ in range(4))
    ga[0, 0, :4] = 1; gv[0, 0, :] = 1; pa[0, 0, :2] = 1; pv[0, 0, :] = 1        # audio half right, visual right
    ga[2, 1, :] = 1; pa[2, 1, :] = 1; pv[2, 0, 5] = 1                          # a false visible segment
    m, per = avvp_metrics(pa, pv, ga, gv, per_video=True)
    assert per['seg_A'].tolist() == pytest.approx([4 / 6, 1, 1])
    assert per['seg_V'].tolist() == pytest.approx([1, 1, 0])
    assert per['seg_AV'].tolist() == pytest.approx([4 / 6, 1, 1])
    assert per['seg_Event'].tolist() == pytest.approx([24 / 26, 1, 0.5])
    assert per['event_A'].tolist() == pytest.approx([1, 1, 1])                # IoU exactly 0.5 matches
    assert m['seg_Type'] == pytest.approx(100 * (np.mean([4 / 6, 1, 1]) + np.mean([1, 1, 0]) + np.mean([4 / 6, 1, 1])) / 3)


def test_video_without_events_scores_one_and_all_zeros_scores_zero_elsewhere():
    z = np.zeros((2, 3, 10), np.uint8)
    m = avvp_metrics(z, z, z, z)
    assert all(v == pytest.approx(100.0) for v in m.values())
    g = z.copy(); g[1, 0, 3:6] = 1                                         # video 1 has an audible event, nothing predicted
    m = avvp_metrics(z, z, g, z)
    assert m['seg_A'] == pytest.approx(50.0) and m['seg_V'] == pytest.approx(100.0) and m['event_A'] == pytest.approx(50.0)


def test_event_iou_rule_and_runs():
    assert extract_events([1, 1, 0, 0, 1, 0, 1, 1, 1, 1]) == [(0, 2), (4, 5), (6, 10)]
    assert extract_events([0] * 10) == []
    p, g = np.zeros((1, 1, 10), np.uint8), np.zeros((1, 1, 10), np.uint8)
    g[0, 0, :7] = 1; p[0, 0, :3] = 1                                        # IoU 3/7 < 0.5: an FP and an FN
    assert [x.item() for x in event_counts(p, g)] == [0, 1, 1]
    p[0, 0, :4] = 1                                                         # IoU 4/7 >= 0.5
    assert [x.item() for x in event_counts(p, g)] == [1, 0, 0]
    p2 = np.zeros((1, 1, 10), np.uint8); p2[0, 0, [0, 1, 2, 3, 5, 6]] = 1  # runs [0,4) and [5,7) vs truth [0,7): 4/7 and 2/7
    assert [x.item() for x in event_counts(p2, g)] == [1, 1, 0]


def test_predictions_are_gated_by_predicted_video_labels():
    vp = np.array([[0.4, 0.6, 0.5]])
    fp = np.full((1, 10, 2, 3), 0.9); fp[0, :, 1, 2] = 0.49                # class 2: visual segments below 0.5
    pa, pv = gate_predictions(vp, fp)
    assert pa[0].sum(-1).tolist() == [0, 10, 10]                           # class 0 suppressed: video prob < 0.5
    assert pv[0].sum(-1).tolist() == [0, 10, 0]


def test_losses_match_elementwise_loops():
    torch.manual_seed(0)
    out = {k: v.detach().double() for k, v in HAN(6, 5, 4, d=16, ff=32)(torch.randn(3, 10, 6), torch.randn(3, 10, 5)).items()}
    y = torch.tensor([[1., 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]])
    sa, sv = (torch.rand(3, 4, 10) > 0.5).float(), (torch.rand(3, 4, 10) > 0.5).float()
    bce = lambda ps, ys: -sum(t * math.log(p) + (1 - t) * math.log(1 - p) for p, t in zip(ps, ys)) / len(ps)
    fl = lambda t: t.flatten().tolist()
    ref = bce(fl(out['video_prob']), fl(y)) + bce(fl(out['a_prob']), fl(y)) + bce(fl(out['v_prob']), fl(0.9 * y + 0.05))
    assert han_loss(out, y).item() == pytest.approx(ref, rel=1e-9)
    sig = lambda z: 1 / (1 + math.exp(-z))
    za, zv = out['frame_logits'][:, :, 0].transpose(1, 2), out['frame_logits'][:, :, 1].transpose(1, 2)
    ref = bce(fl(out['video_prob']), fl(y)) + bce([sig(z) for z in fl(za)], fl(sa)) + bce([sig(z) for z in fl(zv)], fl(sv))
    assert valor_loss(out, y, sa, sv).item() == pytest.approx(ref, rel=1e-9)


def test_mmil_pooling_is_attention_weighted():
    torch.manual_seed(1)
    m = HAN(6, 5, 4, d=16, ff=32).eval()
    o = m(torch.randn(2, 10, 6), torch.randn(2, 10, 5))
    assert o['frame_prob'].shape == (2, 10, 2, 4)
    for k in ('video_prob', 'a_prob', 'v_prob'):
        assert ((o[k] >= 0) & (o[k] <= 1)).all()
    # the video probability lies between the smallest and largest segment probability of each class
    lo, hi = o['frame_prob'].amin((1, 2)), o['frame_prob'].amax((1, 2))
    assert ((o['video_prob'] >= lo - 1e-6) & (o['video_prob'] <= hi + 1e-6)).all()


def test_harvest_and_thresholds_by_hand():
    lg = np.array([[[2.0, -1.0], [0.5, 3.0], [-2.0, 0.0]]])                # 1 video, T = 3, C = 2
    assert harvest(lg, np.array([[1, 0]]), np.zeros(2))[0].tolist() == [[1, 1, 0], [0, 0, 0]]
    th, f = choose_thresholds(lg, np.array([[1, 1]]), np.array([[[1, 1, 0], [0, 1, 0]]]))
    assert f.tolist() == [1.0, 1.0]
    assert harvest(lg, np.array([[1, 1]]), th)[0].tolist() == [[1, 1, 0], [0, 1, 0]]
    th, f = choose_thresholds(lg, np.array([[1, 0]]), np.zeros((1, 2, 3)))
    assert th[1] == 0 and np.isnan(f[1])                                   # no validation video with class 1
    q = label_quality(np.array([[[1, 1, 0, 0]]]), np.array([[[0, 1, 1, 1]]]))
    assert (q['precision'], q['recall']) == pytest.approx((0.5, 1 / 3))


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_teachers_save_load_and_missing_file(tmp_path):
    t = SegmentTeacher(8, 3, hidden=16).eval()
    t.mean.fill_(0.5)
    x = torch.randn(4, 10, 8)
    assert torch.allclose(load_teacher(save_teacher(t, tmp_path / 'a.pt'))(x), t(x), atol=1e-6)
    pt = PromptTeacher(torch.randn(3, 8))
    torch.jit.script(pt).save(str(tmp_path / 's.pt'))
    assert torch.allclose(load_teacher(tmp_path / 's.pt')(x), pt(x), atol=1e-5)
    with pytest.raises(FileNotFoundError, match='never downloaded'): load_teacher(tmp_path / 'clip.pt')
    torch.save({'x': torch.ones(1)}, tmp_path / 'junk.pt')
    with pytest.raises(ValueError, match='junk.pt'): load_teacher(tmp_path / 'junk.pt')


# ---------------------------------------------------------------- real LLP files (fixture subset)
def test_weak_reader_on_fixture():
    w = read_llp_weak(FIX / 'AVVP_test_pd.csv')
    assert len(w) == 25 and w.filename[0] == '4YdbENYcIyE_23_33' and w.labels[1] == ['Blender', 'Speech']
    tr = read_llp_weak(FIX / 'AVVP_train.csv')                              # decimal start/end times are valid names
    assert 'AP0061o0Nvk_101.8_111.8' in set(tr.filename) and tr.video_id.str.len().eq(11).all()


def test_weak_reader_reports_bad_rows(tmp_path):
    p = tmp_path / 'w.csv'
    p.write_text('filename\tevent_labels\nBjCEufrlXm4_20_30\tSpeech,Dog\nshort_1_2\tDog\nMVWVECUju4w_0_10\tUnicorn\n')
    with pytest.raises(LLPFormatError, match=r'w\.csv: line 3: filename .short_1_2.*1 more'): read_llp_weak(p)
    with pytest.warns(UserWarning, match='skipped 2 of 3 rows'):
        df = read_llp_weak(p, skip_bad=True)
    assert len(df) == 1 and [l for l, _ in df.attrs['skipped']] == [3, 4]
    p.write_text('name\tlabels\n')
    with pytest.raises(LLPFormatError, match='line 1'): read_llp_weak(p)


def test_dense_reader_reports_unknown_filenames_and_empty_intervals():
    known = set(read_llp_weak(FIX / 'AVVP_val_pd.csv').filename) | set(read_llp_weak(FIX / 'AVVP_test_pd.csv').filename)
    with pytest.raises(LLPFormatError, match=r'AVVP_eval_audio\.csv: line \d+: '): read_llp_dense(FIX / 'AVVP_eval_audio.csv', known)
    with pytest.warns(UserWarning, match=r'AVVP_eval_audio\.csv: skipped \d+ of'):
        da = read_llp_dense(FIX / 'AVVP_eval_audio.csv', known, skip_bad=True)
    probs = [w for _, w in da.attrs['skipped']]
    assert sum('matches no video' in w for w in probs) >= 3                 # the three unknown filenames kept in the fixture
    assert sum('empty interval' in w for w in probs) == 2                   # CaC2xvdLC34 [9, 9), H5WcJwyjxIg [0, 0)
    assert not set(da.filename) - known


def test_annotations_build_dense_truth():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        te = llp_annotations(FIX, 'test', skip_bad=True)
        tr = llp_annotations(FIX, 'train', skip_bad=True)
    with pytest.raises(LLPFormatError): llp_annotations(FIX, 'test')         # defects are never dropped silently
    i = te['filenames'].index('KSRjje7GH44_60_70')
    assert te['gt_a'][i, LLP_CLASSES.index('Blender')].tolist() == [0] * 8 + [1] * 2
    assert te['gt_a'][i, LLP_CLASSES.index('Speech')].tolist() == [1] * 8 + [0] * 2
    assert te['gt_v'][i, LLP_CLASSES.index('Blender')].tolist() == [1] * 10
    assert te['weak'][i].sum() == 2 and 'gt_a' not in tr and tr['weak'].shape == (20, 25)
    with pytest.raises(ConfigError, match='split'): llp_annotations(FIX, 'dev')


def test_feature_files(tmp_path):
    names = ['4YdbENYcIyE_23_33', 'KSRjje7GH44_60_70']
    for kind, shape in (('vggish', (10, 4)), ('res152', (80, 3))):
        (tmp_path / kind).mkdir()
        for k, n in enumerate(names): np.save(tmp_path / kind / f'{n[:11]}.npy', np.full(shape, float(k), np.float32))
    f = load_llp_features({'audio': tmp_path / 'vggish', 'visual': [tmp_path / 'res152', tmp_path / 'vggish']}, names)
    assert f['audio'].shape == (2, 10, 4) and f['visual'].shape == (2, 10, 7) and f['visual'][1].min() == 1.0
    with pytest.raises(FileNotFoundError, match=r'1 of 3 feature files missing'):
        load_llp_features({'audio': tmp_path / 'vggish'}, names + ['zzzzzzzzzzz_0_10'])
    np.save(tmp_path / 'vggish' / 'bad________.npy', np.zeros((7, 4)))
    with pytest.raises(LLPFormatError, match='bad________.npy'): load_llp_features({'audio': tmp_path / 'vggish'}, ['bad________x_0_10'])


# ---------------------------------------------------------------- SynthLLP and training
def test_synth_events_deterministic_and_consistent():
    cfg = LLPSynthConfig.preset('tiny')
    for i in range(20):
        ev = video_events(cfg, 'val', i)
        assert ev == video_events(cfg, 'val', i)
        assert all(0 <= on < off <= 10 for _, on, off in ev['audio'] + ev['visual'])
        kinds = dict(ev['events'])
        assert {c for c, *_ in ev['audio']} == {c for c, k in kinds.items() if k != 'visual'}
        assert {c for c, *_ in ev['visual']} == {c for c, k in kinds.items() if k != 'audio'}
    assert video_events(cfg, 'val', 0) != video_events(LLPSynthConfig.preset('tiny', seed=1), 'val', 0)
    with pytest.raises(ConfigError, match='p_visual_only'): LLPSynthConfig(p_audio_only=0.8, p_visual_only=0.3)
    assert dense_from_intervals([(1, 2, 5)], 3).sum(1).tolist() == [0, 3, 0]


def test_render_video_shapes():
    cfg = LLPSynthConfig.preset('tiny')
    fr, au, ev = render_video(cfg, 'test', 1)
    assert fr.shape == (10, 64, 64, 3) and fr.dtype == np.uint8 and au.shape == (10, 16000)
    fr2, au2, _ = render_video(cfg, 'test', 1)
    assert np.array_equal(fr, fr2) and np.allclose(au, au2)


def _toy_llp(seed=0, n=(160, 48, 48), C=6, da=12, dv=10, noise=0.6):
    "Features from class prototypes at the true segments (SynthLLP's events, no rendering): a fast benchmark for training tests."
    cfg = LLPSynthConfig(n_classes=C, max_events=2)
    rng = np.random.default_rng(seed)
    pa, pv = rng.standard_normal((C, da)), rng.standard_normal((C, dv))
    out = {}
    for split, k in zip(('train', 'val', 'test'), n):
        evs = [video_events(cfg, split, i) for i in range(k)]
        ga = np.stack([dense_from_intervals(e['audio'], C) for e in evs]); gv = np.stack([dense_from_intervals(e['visual'], C) for e in evs])
        out[split] = {'audio': (np.einsum('nct,cd->ntd', ga, pa) + noise * rng.standard_normal((k, 10, da))).astype(np.float32),
                      'visual': (np.einsum('nct,cd->ntd', gv, pv) + noise * rng.standard_normal((k, 10, dv))).astype(np.float32),
                      'gt_a': ga, 'gt_v': gv, 'weak': (ga | gv).max(-1)}
    return out


def test_training_lowers_loss_and_beats_trivial_baselines():
    llp = _toy_llp()
    cfg = ParserConfig(d_model=32, ff=64, epochs=12, batch_size=16, warmup=1, lr=3e-3)
    te = llp['test']; zeros = np.zeros_like(te['gt_a'])
    base = avvp_metrics(zeros, zeros, te['gt_a'], te['gt_v'])['seg_Type']
    han = train_parser(cfg, llp, 'han', log=lambda s: None)
    assert han['history']['loss'].iloc[-1] < han['history']['loss'].iloc[0]
    s_han = evaluate(han['model'], te, han['stats'])
    assert s_han['seg_Type'] > base + 10
    # VALOR with perfect segment labels must learn the modalities, which weak labels alone cannot tell apart
    val = train_parser(cfg, llp, 'valor', {'a': llp['train']['gt_a'], 'v': llp['train']['gt_v']}, log=lambda s: None)
    s_val = evaluate(val['model'], te, val['stats'])
    assert s_val['seg_Type'] > s_han['seg_Type'] and s_val['seg_Type'] > 70
    with pytest.raises(ConfigError, match='labels'): train_parser(cfg, llp, 'valor')
