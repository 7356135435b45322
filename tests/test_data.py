"""The embedded benchmark: determinism, splits, nesting, storage, tensors, augmentation and bad input."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from avsl_nbdev.core import ConfigError, config_key
from avsl_nbdev.data import (SynthConfig, make_scene, sound_bank, labeled_subset, load_split, benchmark_dir,
                             AVSLDataset, collate_av, boxes_to_mask, image_transform, SOUNDING, KINDS,
                             VGGSS_SIZE_QUANTILES, box_size_quantiles, draw_sizes)


def test_scene_is_a_pure_function_of_seed_split_index(tiny_cfg):
    a = make_scene(tiny_cfg, 'train', 5)
    make_scene(tiny_cfg, 'train', 4)                      # order of generation does not matter
    b = make_scene(tiny_cfg, 'train', 5)
    assert np.array_equal(np.asarray(a['image']), np.asarray(b['image']))
    assert np.array_equal(a['audio'], b['audio']) and a['categories'] == b['categories']
    c = make_scene(SynthConfig.preset('tiny', seed=1), 'train', 5)
    assert not np.array_equal(np.asarray(a['image']), np.asarray(c['image']))


def test_splits_use_disjoint_recordings(tiny_cfg):
    args = (tiny_cfg.seed, tiny_cfg.sample_rate, tiny_cfg.n_samples, tiny_cfg.n_variants)
    tr, te = sound_bank(args[0], 'train', *args[1:]), sound_bank(args[0], 'test', *args[1:])
    for c in SOUNDING:
        for x in tr[c.name]:
            assert not any(np.allclose(x, y) for y in te[c.name]), c.name


def test_scene_semantics(tiny_cfg):
    cfg = SynthConfig.preset('tiny', silent_frac=0.3, offscreen_frac=0.3, n_sounding=2, min_objects=3)
    seen = set()
    for i in range(40):
        s = make_scene(cfg, 'val', i)
        seen.add(s['kind'])
        assert len(set(s['categories'])) == len(s['categories'])          # distinct categories
        srcs = [c for c, f in zip(s['categories'], s['sounding']) if f]
        if s['kind'] == 'normal': assert sorted(srcs) == sorted(s['heard']) and len(srcs) == 2
        if s['kind'] == 'silent': assert srcs == [] and s['heard'] == []
        if s['kind'] == 'offscreen': assert srcs == [] and len(s['heard']) == 1 and s['heard'][0] not in s['categories']
        b = s['boxes']
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= cfg.image_size).all() and (b[:, 2] > b[:, 0]).all()
    assert seen == set(KINDS)


def test_object_sizes_respect_the_config():
    cfg = SynthConfig.preset('tiny', image_size=128, size_dist='loguniform', min_size=0.1, max_size=0.2)
    for i in range(10):
        b = make_scene(cfg, 'train', i)['boxes']
        size = np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) / 128       # sqrt(area) / frame width
        assert (size >= 0.1 - 3 / 128).all() and (size <= 0.2 + 3 / 128).all(), size


def test_default_sizes_follow_the_vggss_boxes():
    "The size quantiles in the package are those of the real VGG-SS boxes (fixture), and scenes draw from them."
    boxes = np.loadtxt(Path(__file__).parent / 'fixtures' / 'real' / 'vggss_boxes.csv', delimiter=',', skiprows=1,
                       usecols=(1, 2, 3, 4))
    assert boxes.shape == (5941, 4)
    np.testing.assert_allclose(box_size_quantiles(boxes), VGGSS_SIZE_QUANTILES, atol=1e-4)
    s = draw_sizes(np.random.default_rng(1), 50000)
    np.testing.assert_allclose(np.quantile(s, [.1, .5, .9]), np.quantile(box_size_quantiles(boxes, np.linspace(0, 1, 1001)), [.1, .5, .9]), atol=0.01)
    cfg = SynthConfig.preset('tiny', image_size=128)
    b = np.concatenate([make_scene(cfg, 'train', i)['boxes'] for i in range(40)])
    med = np.median(np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) / 128)
    assert 0.33 < med < 0.55, med                                       # VGG-SS median 0.437; sprites are re-cropped


def test_labeled_subsets_are_nested_and_reproducible():
    sizes = [1, 5, 15, 30, 150, 300]
    subs = [set(labeled_subset(3000, count=k, seed=3)) for k in sizes]
    assert all(a <= b for a, b in zip(subs, subs[1:]))
    assert set(labeled_subset(3000, ratio=0.05, seed=3)) == subs[-2]
    with pytest.raises(ConfigError, match='labeled ratio'):
        labeled_subset(100, ratio=0)


def test_bad_config_values_name_the_field():
    with pytest.raises(ConfigError, match=r'SynthConfig.n_sounding = 3'):
        SynthConfig(n_sounding=3)
    with pytest.raises(ConfigError, match=r'SynthConfig.offscreen_frac'):
        SynthConfig(silent_frac=0.7, offscreen_frac=0.5)


def test_storage_is_cached_by_config_and_rebuilt_when_missing(tiny_cfg, tiny_bench):
    path = benchmark_dir(tiny_cfg) / 'val'
    assert (path / 'dataset_info.json').exists()
    again = load_split(tiny_cfg, 'val')
    assert again['id'] == tiny_bench['val']['id']
    assert config_key(tiny_cfg) != config_key(SynthConfig.preset('tiny', snr_db=0))
    r = tiny_bench['val'][0]
    assert len(r['audio']) == tiny_cfg.n_samples and r['image'].size == (tiny_cfg.image_size,) * 2
    assert len(r['boxes']) == len(r['categories']) == len(r['sounding'])


def test_corrupt_cache_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv('AVSL_CACHE', str(tmp_path))
    cfg = SynthConfig.preset('tiny', n_val=4)
    path = benchmark_dir(cfg) / 'val'
    path.mkdir(parents=True)
    (path / 'dataset_info.json').write_text('{not json')
    with pytest.raises(RuntimeError, match=str(path)):
        load_split(cfg, 'val')
    assert len(load_split(cfg, 'val', rebuild=True)) == 4


def test_dataset_tensors(tiny_cfg, tiny_bench):
    ds = AVSLDataset(tiny_bench['val'])
    b = collate_av([ds[i] for i in range(3)])
    S = tiny_cfg.image_size
    assert b['image'].shape == (3, 3, S, S) and b['mask'].shape == (3, 1, S, S)
    assert b['wave'].shape == (3, 1, tiny_cfg.n_samples) and b['spec'].shape[:3] == (3, 1, 64)
    for i in range(3):
        row = tiny_bench['val'][i]
        sb = [bx for bx, s in zip(row['boxes'], row['sounding']) if s]
        assert torch.equal(b['mask'][i, 0], boxes_to_mask(torch.tensor(sb).reshape(-1, 4), S, S).float())
    sub = AVSLDataset(tiny_bench['train'], indices=[5, 2])
    assert len(sub) == 2 and sub[0]['index'] == 5


def test_dataset_rejects_wrong_audio_length(tiny_bench):
    bad = tiny_bench['val'].select(range(3)).map(lambda r, i: {'audio': r['audio'][:-100] if i == 1 else r['audio']}, with_indices=True)
    with pytest.raises(ValueError, match='val-000001'):
        AVSLDataset(bad)


def test_batched_views_move_mask_and_boxes_with_the_pixels(tiny_bench):
    torch.manual_seed(0)
    plain, weak, strong = (AVSLDataset(tiny_bench['train'], view=v) for v in ('none', 'weak', 'strong'))
    pos = [i for i in range(len(plain)) if len(plain[i]['boxes'])][:12]
    b0 = plain.__getitems__(pos)
    assert torch.equal(b0['image'], torch.stack([plain[i]['image'] for i in pos]))      # a batch = its samples stacked
    for ds in (weak, strong):
        b = ds.__getitems__(pos)
        assert b['image'].shape == b0['image'].shape and set(b['mask'].unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(b['index'], b0['index']) and b['id'] == b0['id']
        S = b['image'].shape[-1]
        for m, bx in zip(b['mask'][:, 0], b['boxes']):
            raster = boxes_to_mask(bx, S, S).float()
            perim = sum(2 * ((x[2] - x[0]) + (x[3] - x[1])).item() + 4 for x in bx)
            assert (raster - m).abs().sum().item() <= perim                            # up to a one-pixel rim
    assert not torch.equal(strong.__getitems__(pos)['spec'], b0['spec'])              # SpecAugment masks on the strong view
    assert torch.equal(weak.__getitems__(pos)['spec'], b0['spec'])


def test_strong_view_moves_mask_and_boxes_together(tiny_bench):
    torch.manual_seed(0)
    tf = image_transform('strong', 64)
    img = tv_tensors.Image(torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes([[10, 12, 30, 40]], format='XYXY', canvas_size=(64, 64))
    mask = tv_tensors.Mask(boxes_to_mask(boxes, 64, 64)[None])
    for _ in range(20):
        i2, b2, m2 = tf(img, boxes, mask)
        assert i2.dtype == torch.float32 and m2.dtype == torch.uint8
        raster = boxes_to_mask(b2, 64, 64)
        # nearest-neighbour resizing of the mask vs the analytic box: they differ by at most a one-pixel rim
        diff = (raster.int() - m2[0].int()).abs().sum().item()
        perimeter = 2 * ((b2[0, 2] - b2[0, 0]) + (b2[0, 3] - b2[0, 1])).item() + 4
        assert diff <= perimeter, (diff, perimeter)


def test_speech_is_reproducible_whatever_came_before():
    """espeak-ng has hidden state and a clock-seeded generator; `speak` must still be a pure function."""
    from avsl_nbdev.data import speak
    a, sr = speak('hello there', 'en+m3', 170, 30, seed=1)
    speak('what a lovely day', 'en+f3', 200, 80, seed=2)
    b, _ = speak('hello there', 'en+m3', 170, 30, seed=1)
    assert sr == 22050 and len(a) > 1000 and np.array_equal(a, b)
