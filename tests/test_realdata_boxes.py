"Real data: boxes validated (error naming the entry, or counted warning with on_error='skip'); corrupt caches named; fingerprint; public protocol."
import json
import warnings

import numpy as np
import pytest
import torch

from avsl_nbdev import realdata as rd


def _vggss(tmp_path, *entries):
    f = tmp_path / 'vggss.json'
    f.write_text(json.dumps([{'file': n, 'class': 'c', 'bbox': b} for n, b in entries]))
    return f


@pytest.mark.parametrize('bad, says', [([[10, 20, 100, 120]], r'outside \[0, 1\] \(pixels\?'), ([[0.1, 0.2, 1.3, 0.6]], r'outside \[0, 1\]'),
                                       ([[-0.2, 0.2, 0.5, 0.6]], r'outside \[0, 1\]'), ([[0.5, 0.2, 0.3, 0.6]], 'inverted'),
                                       ([[0.2, 0.6, 0.5, 0.2]], 'inverted'), ([[0.2, 0.2, 0.2, 0.6]], 'zero area'),
                                       ([[0.1, 0.1, 0.5, float('nan')]], 'non-finite')])
def test_vggss_bad_boxes_named_or_skipped(tmp_path, bad, says):
    f = _vggss(tmp_path, ('good_000001', [[0.1, 0.1, 0.5, 0.5]]), ('bad_000002', bad))
    with pytest.raises(rd.RealDataError, match=r'entry 1 \(bad_000002\): box 0 .*' + says): rd.read_vggss(f)
    with pytest.warns(UserWarning, match=r'1 annotation problems.*bad_000002'):
        ann = rd.read_vggss(f, on_error='skip')
    assert list(ann) == ['good_000001']


def test_vggss_partial_entry_keeps_good_boxes(tmp_path):
    f = _vggss(tmp_path, ('a_1', [[0.1, 0.1, 0.5, 0.5], [0.3, 0.3, 0.3, 0.9]]))
    with pytest.warns(UserWarning, match='box 1'): ann = rd.read_vggss(f, on_error='skip')
    np.testing.assert_allclose(ann['a_1']['bbox'], [[0.1, 0.1, 0.5, 0.5]])


def test_vggss_duplicates(tmp_path):
    f = _vggss(tmp_path, ('a_1', [[0.1, 0.1, 0.5, 0.5]]), ('b_1', [[0.1, 0.1, 0.5, 0.5]]), ('a_1', [[0.2, 0.2, 0.6, 0.6]]))
    with pytest.raises(rd.RealDataError, match=r'entries 0 and 2 are both a_1 \(different boxes\)'): rd.read_vggss(f)
    with pytest.warns(UserWarning, match='1 annotation problems'): ann = rd.read_vggss(f, on_error='skip')
    assert list(ann) == ['b_1']                                              # which a_1 is right is unknown: dropped
    f = _vggss(tmp_path, ('a_1', [[0.1, 0.1, 0.5, 0.5]]), ('a_1', [[0.1, 0.1, 0.5, 0.5]]))
    with pytest.raises(rd.RealDataError, match='same boxes'): rd.read_vggss(f)
    with pytest.warns(UserWarning): assert list(rd.read_vggss(f, on_error='skip')) == ['a_1']


def test_vggss_valid_file_reads_silently(tmp_path):
    f = _vggss(tmp_path, ('a_1', [[0, 0, 1, 1]]), ('b_1', [[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        ann = rd.read_vggss(f)
    assert len(ann['b_1']['bbox']) == 2


def _xml(path, boxes):
    path.write_text('<annotation>' + ''.join(f'<object><bbox><name>s</name><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>'
                                             f'<ymax>{d}</ymax></bbox></object>' for a, b, c, d in boxes) + '</annotation>')
    return path


@pytest.mark.parametrize('box, says', [((10, 20, 300, 90), 'outside the 256-pixel frame'), ((-5, 20, 100, 90), 'outside the 256-pixel frame'),
                                       ((100, 20, 50, 90), 'inverted'), ((10, 20, 10, 90), 'zero area')])
def test_flickr_box_outside_frame_named(tmp_path, box, says):
    f = _xml(tmp_path / '123.xml', [(0, 0, 100, 100), box])
    with pytest.raises(rd.RealDataError, match=r'123\.xml: box 1 .*' + says): rd.flickr_boxes(f)


def test_dataset_skips_bad_entries_counted(tmp_path):
    ids = rd.write_example(tmp_path, 'vggss', n=4)
    entries = json.loads((tmp_path / 'vggss.json').read_text())
    entries[1]['bbox'] = [[40, 30, 120, 90]]                                  # pixels
    (tmp_path / 'vggss.json').write_text(json.dumps(entries))
    with pytest.raises(rd.RealDataError, match=ids[1]): rd.RealAVDataset(tmp_path, ids, 'vggss', image_size=64)
    with pytest.warns(UserWarning) as rec:
        ds = rd.RealAVDataset(tmp_path, ids, 'vggss', image_size=64, on_error='skip')
    assert ids[1] not in ds.ids and len(ds) == 3
    assert any('1 annotation problems' in str(w.message) for w in rec)


def test_flickr_dataset_bad_xml_skipped_on_validate(tmp_path):
    ids = rd.write_example(tmp_path, 'flickr', n=3)
    _xml(tmp_path / 'Annotations' / f'{ids[0]}.xml', [(10, 10, 400, 100)])
    ds = rd.RealAVDataset(tmp_path, ids, 'flickr', image_size=64, on_error='skip')
    with pytest.warns(UserWarning, match='1 of 3 samples could not be decoded'): assert ds.validate() == [ids[0]]
    strict = rd.RealAVDataset(tmp_path, ids, 'flickr', image_size=64)
    with pytest.raises(rd.RealDataError, match=f'{ids[0]}.xml: box 0'): strict[0]


def test_write_example_boxes_inside_frame(tmp_path):
    ids = rd.write_example(tmp_path, 'flickr', n=12, seed=3)
    for i in ids:
        b = rd.flickr_boxes(tmp_path / 'Annotations' / f'{i}.xml')            # [K, 4] on the 256-pixel frame
        assert b.ndim == 2 and b.shape[1] == 4 and len(b) >= 1
        assert (b >= 0).all() and (b <= 256).all() and (b[:, 2:] > b[:, :2]).all(), (i, b)


def test_corrupt_audio_cache_named(tmp_path):
    ids = rd.write_example(tmp_path / 'd', 'vggss', n=2)
    ds = rd.RealAVDataset(tmp_path / 'd', ids, 'vggss', image_size=64, audio_cache=tmp_path / 'cache')
    ds[0]
    f = next((tmp_path / 'cache').rglob('*.npz'))
    f.write_bytes(b'not a zip')
    with pytest.raises(rd.RealDataError, match=str(f)): ds[0]


def test_fingerprint_covers_files_and_boxes(tmp_path):
    ids = rd.write_example(tmp_path, 'vggss', n=3)
    fp = rd.RealAVDataset(tmp_path, ids, 'vggss', image_size=64)._fingerprint
    assert rd.RealAVDataset(tmp_path, ids, 'vggss', image_size=64)._fingerprint == fp
    w = tmp_path / 'audio' / f'{ids[2]}.wav'; w.write_bytes(w.read_bytes() + b'\0\0')
    fp2 = rd.RealAVDataset(tmp_path, ids, 'vggss', image_size=64)._fingerprint
    assert fp2 != fp
    e = json.loads((tmp_path / 'vggss.json').read_text()); e[0]['bbox'][0][2] -= 0.01
    (tmp_path / 'vggss.json').write_text(json.dumps(e))
    assert rd.RealAVDataset(tmp_path, ids, 'vggss', image_size=64)._fingerprint != fp2


def test_evaluate_public_uses_boxes(tmp_path):
    from avsl_nbdev.metrics import LocalizationMeter, public_gt
    ids = rd.write_example(tmp_path, 'vggss', n=3)
    ds = rd.RealAVDataset(tmp_path, ids, 'vggss')

    class Box:                                                                # a model whose map is a box's mask
        training = False
        def to(self, d): return self
        def eval(self): return self
        def train(self, m=True): return self
        def maps(self, b): return torch.stack([m[0] for m in b['mask']])[:, ::8, ::8].float()
    r = rd.evaluate_public(Box(), ds, device='cpu')
    ann = rd.read_vggss(tmp_path / 'vggss.json')
    # the public ground truth = EZ-VSL's int(clip(b, 0, 1) * 224) drawn on the 224 grid
    m = LocalizationMeter()
    for k, i in enumerate(ids):
        s = ds[k]
        gt224 = torch.zeros(224, 224)
        for b in (np.clip(ann[i]['bbox'].astype(np.float64), 0, 1) * 224).astype(int): gt224[b[1]:b[3], b[0]:b[2]] = 1
        assert torch.equal(public_gt(s['boxes'], 224, 224).float(), gt224)
        m.update(Box().maps({'mask': s['mask'][None]}), s['mask'][None], boxes=[s['boxes']])
    ref = m.compute()
    assert r['median_mean_ciou'] == pytest.approx(ref['median_mean_ciou'], abs=1e-12)
