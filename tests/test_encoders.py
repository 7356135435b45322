"""Encoders: shapes, normalisation, registry errors, local weights (never downloaded), object pretraining."""
import pytest
import torch

from avsl_nbdev.core import ConfigError
from avsl_nbdev.encoders import (AVEncoder, build_audio, build_visual, audio_names, ObjectPretrainConfig,
                                 object_images, pretrain_visual, SmallCNN)


@pytest.mark.parametrize('audio', [n for n in audio_names() if n.endswith('-small')])
def test_shapes_and_unit_norm(audio):
    B = 2
    batch = {'image': torch.randn(B, 3, 64, 64), 'wave': torch.randn(B, 1, 16000) * .1, 'spec': torch.randn(B, 1, 64, 101)}
    (v,), (a,) = AVEncoder('cnn', audio, dim=16)(batch)
    assert v.shape == (B, 16, 8, 8) and a.shape == (B, 16)           # `cnn`: stride 8
    assert torch.allclose(v.norm(dim=1), torch.ones(B, 8, 8), atol=1e-5)
    assert torch.allclose(a.norm(dim=1), torch.ones(B), atol=1e-5)


def test_registry_errors_list_the_names():
    with pytest.raises(ConfigError, match='vggish-small'):
        build_audio('mfcc')
    with pytest.raises(ConfigError, match='resnet18'):
        build_visual('vit')
    assert type(build_audio('V-small')).__name__ == 'AudioVGGish'


def test_local_weights(tmp_path):
    src = SmallCNN()
    torch.save(src.state_dict(), tmp_path / 'w.pt')
    got = build_visual('cnn', weights=tmp_path / 'w.pt')
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), got.state_dict().values()))
    with pytest.raises(FileNotFoundError, match='missing.pt'):
        build_visual('cnn', weights=tmp_path / 'missing.pt')
    torch.save({'other': torch.ones(1)}, tmp_path / 'bad.pt')
    with pytest.raises(ValueError, match='bad.pt'):
        build_visual('cnn', weights=tmp_path / 'bad.pt')


def test_object_images_are_deterministic_and_pretraining_learns(tmp_path):
    cfg = ObjectPretrainConfig.preset('tiny', n_images=512, epochs=3)
    x1, y1 = object_images(cfg, 0, 8)
    x2, y2 = object_images(cfg, 0, 8)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and x1.shape == (8, 3, 64, 64)
    x3, y3 = object_images(cfg, 0, 40, workers=2, chunk=16)             # rendered by two worker processes
    x4, y4 = object_images(cfg, 0, 40, workers=1)
    assert torch.equal(x3, x4) and torch.equal(y3, y4) and torch.equal(x3[:8], x1)
    stats = pretrain_visual(cfg, tmp_path / 'cnn.pt', log=lambda s: None)
    assert stats['losses'][-1] < stats['losses'][0]
    assert (tmp_path / 'cnn.pt').exists() and not (tmp_path / 'cnn.pt.tmp').exists()
    build_visual('cnn', weights=tmp_path / 'cnn.pt')


def test_resnet18_object_pretraining_is_the_gpu_presets_trunk(tmp_path, monkeypatch):
    "ResNet-18 learns the objects; its file is in torchvision's names (as ImageNet's); the gpu preset starts from it."
    import avsl_nbdev.encoders as enc
    from avsl_nbdev.dmt import DMTConfig, visual_weights
    cfg = ObjectPretrainConfig.preset('tiny', visual='resnet18', n_images=256, image_size=32, epochs=2, batch_size=32)
    stats = pretrain_visual(cfg, tmp_path / 'r18.pt', log=lambda s: None)
    assert stats['losses'][-1] < stats['losses'][0]
    sd = torch.load(tmp_path / 'r18.pt')
    assert 'conv1.weight' in sd and 'layer4.1.bn2.bias' in sd and not any(k.startswith('fc.') for k in sd)
    assert torch.equal(build_visual('resnet18', weights=tmp_path / 'r18.pt').body[0].weight, sd['conv1.weight'])
    # the small CNN's committed file names predate the `visual` field; the ResNet's differ from them
    assert enc.cnn_weights_name(ObjectPretrainConfig.preset('cpu')) == 'cnn-objects-dba42205d7f8.pt'
    assert enc.cnn_weights_name(cfg).startswith('resnet18-objects-')
    with pytest.raises(ConfigError, match='ObjectPretrainConfig.visual'): ObjectPretrainConfig(visual='vit')
    monkeypatch.setenv('AVSL_CACHE', str(tmp_path))
    monkeypatch.delenv('AVSL_RESNET18_WEIGHTS', raising=False)
    gpu = DMTConfig.preset('gpu')
    with pytest.raises(ConfigError, match='object-pretrained resnet18'): visual_weights(gpu)     # never trained while building configs
    monkeypatch.setattr(enc, 'pretrain_visual', lambda c, path, log: enc.atomic_save(enc.ResNet18Trunk().torchvision_state(), path))
    made = visual_weights(gpu, pretrain=True, log=lambda s: None)
    assert made == str(tmp_path / 'weights' / enc.cnn_weights_name(ObjectPretrainConfig.preset('gpu', visual='resnet18')))
    monkeypatch.setenv('AVSL_RESNET18_WEIGHTS', str(tmp_path / 'r18.pt'))        # a local ImageNet file wins
    assert visual_weights(DMTConfig.preset('gpu')) == str(tmp_path / 'r18.pt')


def test_committed_trunks_are_used_without_training(tmp_path, monkeypatch):
    import avsl_nbdev.encoders as enc
    monkeypatch.setenv('AVSL_CACHE', str(tmp_path))                      # an empty cache: nothing to find there
    monkeypatch.setattr(enc, 'pretrain_visual', lambda *a, **k: pytest.fail('pretrained instead of using the committed file'))
    for p in enc.COMMITTED_CNN:
        cfg = ObjectPretrainConfig.preset(p)
        path = enc.pretrained_cnn(cfg)
        assert path == enc.committed_weights(enc.cnn_weights_name(cfg)) and path.stat().st_size > 5e5
        build_visual('cnn', weights=path)
    assert not (tmp_path / 'weights').exists()


def test_audio_pretraining_learns_and_is_committed(tmp_path, monkeypatch):
    "The tiny sound pretraining: loss falls, the committed file is the one loaded, the corpus is not the benchmark's sounds."
    import numpy as np
    from avsl_nbdev import encoders as enc
    from avsl_nbdev.data import sound_bank
    cfg = enc.AudioPretrainConfig.preset('tiny')
    stats = enc.pretrain_audio(cfg, tmp_path / 'a.pt', log=lambda s: None)
    assert stats['losses'][-1] < stats['losses'][0] and (tmp_path / 'a.json').exists()
    monkeypatch.setenv('AVSL_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setattr(enc, 'pretrain_audio', lambda *a, **k: pytest.fail('retrained a committed backbone'))
    path = enc.pretrained_audio(cfg, train=False)
    assert path == enc.committed_weights(enc.audio_weights_name(cfg))
    net = build_audio(cfg.audio, str(path))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in torch.load(path).items())
    with pytest.raises(ConfigError, match='does not exist yet'):
        enc.pretrained_audio(enc.AudioPretrainConfig.preset('tiny', seed=5), train=False)
    waves, labels = enc.sound_corpus(cfg)
    for split in ('val', 'test'):                    # no corpus recording is a validation or test recording of the benchmark
        bank = torch.from_numpy(np.concatenate(list(sound_bank(0, split, 16000, 16000, 2).values())))
        assert torch.cdist(bank, waves[labels < 21]).min() > 1.0
    with pytest.raises(FileNotFoundError): build_audio('vggish-small', str(tmp_path / 'missing.pt'))


def test_soundnet_pretraining_reads_only_training_clips(tmp_path, monkeypatch):
    "The SoundNet analog learns from the training split's clips and the object CNN's view of their frames, nothing else."
    from avsl_nbdev import encoders as enc, data as D
    seen, real = [], D.load_benchmark
    monkeypatch.setattr(D, 'load_benchmark', lambda cfg, *a, splits=D.SPLITS, **k: seen.append(tuple(splits)) or real(cfg, *a, splits=splits, **k))
    cfg = enc.SoundNetPretrainConfig.preset('tiny')
    stats = enc.pretrain_soundnet(cfg, tmp_path / 's.pt', log=lambda s: None)
    assert seen == [('train',)]
    assert stats['n_train'] + stats['n_held_out'] == D.SynthConfig.preset('tiny').n_train
    assert stats['losses'][-1] < stats['losses'][0] and 0 <= stats['object_classifier_accuracy'] <= 1   # tiny CNN: near chance
    net = build_audio(cfg.audio, str(tmp_path / 's.pt'))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in torch.load(tmp_path / 's.pt').items())
    assert enc.pretrained_soundnet(cfg, train=False) == enc.committed_weights(enc.soundnet_weights_name(cfg))
