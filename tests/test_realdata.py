"Real-data loaders (nbs/14_real_data.ipynb): annotation parsing by hand, the real lists' overlap, bad input, the sample schema."
import json, warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from avsl_nbdev import realdata as rd

FX = Path(__file__).parent / 'fixtures' / 'real'


def test_flickr_xml_by_hand(tmp_path):
    f = tmp_path / 'a.xml'
    f.write_text("<annotation><filename>a.jpg</filename><object><bbox><name>x</name><xmin>10</xmin><ymin>20</ymin>"
                 "<xmax>110</xmax><ymax>60</ymax></bbox></object><object><bbox><name>y</name><xmin>0</xmin><ymin>0</ymin>"
                 "<xmax>256</xmax><ymax>128</ymax></bbox></object></annotation>")
    np.testing.assert_array_equal(rd.flickr_boxes(f), [[10, 20, 110, 60], [0, 0, 256, 128]])
    (tmp_path / 'bad.xml').write_text('<annotation><object><bbox>')
    with pytest.raises(rd.RealDataError, match='bad.xml'): rd.flickr_boxes(tmp_path / 'bad.xml')
    (tmp_path / 'nan.xml').write_text('<a><o><bbox><n>x</n><xmin>1</xmin><ymin>q</ymin><xmax>3</xmax><ymax>4</ymax></bbox></o></a>')
    with pytest.raises(rd.RealDataError, match='nan.xml.*non-numeric'): rd.flickr_boxes(tmp_path / 'nan.xml')


def test_consensus_mask_values(tmp_path):
    "Three annotators: a pixel inside 1 box weighs 0.5, inside 2 or 3 boxes 1 (the Flickr rule)."
    ids = rd.write_example(tmp_path, 'flickr', n=1, size=(256, 256))
    xml = tmp_path / 'Annotations' / f'{ids[0]}.xml'
    xml.write_text("<a>" + ''.join(f"<o><bbox><n>s</n><xmin>{x}</xmin><ymin>0</ymin><xmax>{x + 64}</xmax><ymax>64</ymax></bbox></o>"
                                  for x in (0, 32, 192)) + "</a>")
    m = rd.RealAVDataset(tmp_path, ids, 'flickr', image_size=256)[0]['mask'][0]
    assert m[10, 10] == 0.5 and m[10, 40] == 1.0 and m[10, 200] == 0.5 and m[100, 100] == 0.0


def test_vggss_json_and_lists():
    with pytest.raises(rd.RealDataError, match=r'entry 16 \(UyCw7pCgYg8_000055\): box 2 .* zero area'): rd.read_vggss(FX / 'vggss.json')
    with pytest.warns(UserWarning, match='1 annotation problems'):            # the public file has degenerate boxes
        ann = rd.read_vggss(FX / 'vggss.json', on_error='skip')
    assert len(ann) == 60 and sum(len(v['bbox']) > 1 for v in ann.values()) == 5
    assert all((v['bbox'] >= 0).all() and (v['bbox'] <= 1).all() for v in ann.values())
    assert rd.read_ids(FX / 'vggss_test.csv')[:1] == ['zpWuikVorYg_000032']
    lists = {k: rd.read_ids(FX / f) for k, f in (('10k', 'flickr_10k.txt'), ('sup', 'flickr_sup_train.txt'), ('test', 'flickr_test.csv'))}
    tab = rd.list_overlaps(lists)
    assert tab.loc['10k', 'test'] == 1 and tab.loc['10k', 'sup'] == 3 and tab.loc['sup', 'test'] == 0
    with pytest.warns(UserWarning, match='4767923306'):
        kept = rd.check_overlap(lists['10k'], lists['test'], action='drop')
    assert '4767923306' not in kept and len(kept) == len(lists['10k']) - 1


def test_malformed_vggss_entry_is_named(tmp_path):
    (tmp_path / 'v.json').write_text(json.dumps([{'file': 'a_000001', 'bbox': [[0, 0, 1, 1]]}, {'class': 'x', 'bbox': []}]))
    with pytest.raises(rd.RealDataError, match='entry 1'): rd.read_vggss(tmp_path / 'v.json')


def test_audio_against_scipy_and_resampling(tmp_path):
    import soundfile as sf
    from scipy.signal import spectrogram
    t = np.arange(44100 * 2) / 44100
    sf.write(tmp_path / 'a.wav', np.stack([np.sin(2 * np.pi * 2000 * t)] * 2, 1).astype(np.float32) * 0.3, 44100)   # stereo, 2 s
    w = rd.load_wav(tmp_path / 'a.wav')
    assert w.shape == (48000,)                                                    # tiled to 3 s at 16 kHz
    spec = rd.ezvsl_spectrogram(w)
    _, _, S = spectrogram(w, 16000, nperseg=512, noverlap=274)
    torch.testing.assert_close(spec[0], torch.from_numpy(np.log(S + 1e-7) / 12).float())
    assert int(spec[0].mean(1).argmax()) == 64                                    # 2 kHz / 31.25 Hz


def test_missing_and_corrupt_files_never_substituted(tmp_path):
    ids = rd.write_example(tmp_path, 'vggss', n=5)
    ds = rd.RealAVDataset(tmp_path, ids, 'vggss', image_size=64)
    assert [ds[k]['id'] for k in range(5)] == ids                                  # sample k is id k
    (tmp_path / 'frames' / f'{ids[1]}.jpg').unlink()
    with pytest.raises(rd.RealDataError, match=f'{ids[1]}.jpg'): rd.RealAVDataset(tmp_path, ids, 'vggss')
    with pytest.warns(UserWarning, match='1 of 5'):
        part = rd.RealAVDataset(tmp_path, ids, 'vggss', image_size=64, on_error='skip')
    assert part.ids == [i for i in ids if i != ids[1]] and ids[1] in part.skipped
    (tmp_path / 'audio' / f'{ids[2]}.wav').write_bytes(b'RIFF junk')
    with pytest.raises(rd.RealDataError, match=f'{ids[2]}.wav'): part[part.ids.index(ids[2])]
    strict = rd.RealAVDataset(tmp_path, part.ids, 'vggss', image_size=64)
    with pytest.raises(rd.RealDataError, match=f'{ids[2]}.wav'): strict.validate()
    with pytest.raises(rd.RealDataError, match='not in vggss.json'):
        rd.RealAVDataset(tmp_path, part.ids + ['zz_000000'], 'vggss')


def test_views_and_subsets(tmp_path):
    ids = rd.write_example(tmp_path, 'flickr', n=4)
    ds = rd.RealAVDataset(tmp_path, ids, 'flickr', image_size=64)
    sub = ds.view_of('weak', indices=[3, 1])
    assert len(sub) == 2 and sub[0]['id'] == ids[3] and sub[0]['index'] == 3 and len(ds) == 4
    assert sub[0]['image'].shape == (3, 64, 64)
    with pytest.raises(ValueError, match='on_error'): rd.RealAVDataset(tmp_path, ids, on_error='ignore')


def test_partly_annotated_training_list(tmp_path):
    "Clips without boxes need no annotation file and are unlabeled; DMT draws D_l from the annotated ones only."
    from avsl_nbdev.dmt import DMTConfig, dmt_labeled_mask
    from avsl_nbdev.core import ConfigError
    ids = rd.write_example(tmp_path, 'flickr', n=6)
    for i in ids[2:]: (tmp_path / 'Annotations' / f'{i}.xml').unlink()
    ds = rd.RealAVDataset(tmp_path, ids, 'flickr', annotated=ids[:2], image_size=64)
    assert ds.labeled_mask().tolist() == [True, True, False, False, False, False]
    assert ds[3]['mask'].sum() == 0 and len(ds[3]['boxes']) == 0 and ds[0]['mask'].sum() > 0
    lab = dmt_labeled_mask(DMTConfig.preset('tiny', labeled=2), {'train': ds})
    assert lab.tolist() == ds.labeled_mask().tolist()
    with pytest.raises(ConfigError, match='labeled'): dmt_labeled_mask(DMTConfig.preset('tiny', labeled=3), {'train': ds})
    with pytest.raises(rd.RealDataError, match='xml'): rd.RealAVDataset(tmp_path, ids, 'flickr', annotated=ids[:3])


def test_short_bbox_and_validate_rekeys(tmp_path):
    (tmp_path / 's.xml').write_text('<a><o><bbox><n>x</n><xmin>1</xmin><ymin>2</ymin></bbox></o></a>')
    with pytest.raises(rd.RealDataError, match='s.xml.*4 coordinates'): rd.flickr_boxes(tmp_path / 's.xml')
    ids = rd.write_example(tmp_path / 'v', 'vggss', n=3)
    with pytest.warns(UserWarning, match='repeated'):
        ds = rd.RealAVDataset(tmp_path / 'v', ids + ids[:1], 'vggss', image_size=64, on_error='skip')
    assert ds.ids == ids
    key = ds._fingerprint
    (tmp_path / 'v' / 'frames' / f'{ids[0]}.jpg').write_bytes(b'junk')
    with pytest.raises(rd.RealDataError, match='subset'): ds.view_of('none', [1, 2]).validate()
    with pytest.warns(UserWarning, match='could not be decoded'): assert ds.validate() == [ids[0]]
    assert ds.ids == ids[1:] and ds._fingerprint != key


def test_audio_cache(tmp_path, monkeypatch):
    ids = rd.write_example(tmp_path / 'd', 'vggss', n=2)
    ds = rd.RealAVDataset(tmp_path / 'd', ids, 'vggss', image_size=64, audio_cache=tmp_path / 'cache')
    first = ds[1]
    assert len(list((tmp_path / 'cache').rglob('*.npz'))) == 1
    monkeypatch.setattr(rd, 'load_wav', lambda *a, **k: pytest.fail('audio decoded again although cached'))
    again = ds[1]
    assert torch.equal(first['spec'], again['spec']) and torch.equal(first['wave'], again['wave'])
    plain = rd.RealAVDataset(tmp_path / 'd', ids, 'vggss', image_size=64)
    monkeypatch.undo()
    torch.testing.assert_close(plain[1]['spec'], first['spec'], atol=0.01, rtol=0)      # float16 storage
