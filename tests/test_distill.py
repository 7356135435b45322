"""Hint losses against slow references, frozen teachers, the teacher-free inference path, plug-in teachers, and a tiny
training run through the shared trainer in which the hint losses fall."""
import math
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from avsl_nbdev.core import ConfigError
from avsl_nbdev.contrastive import ModelConfig, build_model
from avsl_nbdev.data import AVSLDataset, collate_av
from avsl_nbdev.train import TrainConfig, fit
from avsl_nbdev import distill as D


def _gen(seed): return torch.Generator().manual_seed(seed)


def test_audio_hint_by_loops():
    s, t = torch.randn(4, 6, generator=_gen(0)), torch.randn(4, 6, generator=_gen(1))
    ref = 0.0
    for b in range(4):
        ns = math.sqrt(sum(x * x for x in s[b].tolist())); nt = math.sqrt(sum(x * x for x in t[b].tolist()))
        ref += sum((x / ns - y / nt) ** 2 for x, y in zip(s[b].tolist(), t[b].tolist()))
    assert D.audio_hint_loss(s, t).item() == pytest.approx(ref / 4, rel=1e-5)


def test_visual_hint_by_loops():
    B, h, w = 3, 4, 4
    s, o = torch.randn(B, h, w, generator=_gen(2)), torch.rand(B, 8, 8, generator=_gen(3))
    total = 0.0
    for b in range(B):
        # area resize 8x8 -> 4x4 by hand
        oo = [[sum(o[b, 2 * i + di, 2 * j + dj].item() for di in range(2) for dj in range(2)) / 4 for j in range(w)] for i in range(h)]
        ss = [[s[b, i, j].item() for j in range(w)] for i in range(h)]
        def z(m):
            vals = [x for row in m for x in row]; mu = sum(vals) / len(vals)
            sd = math.sqrt(sum((x - mu) ** 2 for x in vals) / len(vals))
            return [(x - mu) / (sd + 1e-6) for x in vals]
        total += sum((a - c) ** 2 for a, c in zip(z(ss), z(oo)))
    assert D.visual_hint_loss(s, o).item() == pytest.approx(total / (B * h * w), rel=1e-5)


def test_hint_weights_are_checked():
    with pytest.raises(ConfigError, match='visual_weight'): D.DistillConfig(visual_weight=-1)
    with pytest.raises(ConfigError, match='audio_weight'): D.Distilled(ModelConfig(), D.DistillConfig(audio_weight=1.0), {})
    with pytest.raises(ConfigError, match='audio_teacher'): D.load_teacher('http://x', 'audio')


@pytest.fixture(scope='module')
def batch(tiny_bench):
    ds = AVSLDataset(tiny_bench['train'], view='weak')
    return collate_av([ds[i] for i in range(8)])


def _random_teachers(seed=0):
    torch.manual_seed(seed)
    return {'audio': D.freeze(D.AudioTeacher(32)), 'visual': D.freeze(D.VisualTeacher())}


def test_teachers_are_frozen(batch):
    teachers = _random_teachers()
    before = {k: {n: p.clone() for n, p in t.state_dict().items()} for k, t in teachers.items()}
    m = D.Distilled(ModelConfig(), D.DistillConfig(audio_weight=1.0, visual_weight=1.0), teachers)
    m.train()
    for t in teachers.values(): t.train()                 # a trainer calling .train() cannot unfreeze them
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for _ in range(2):
        l = m.losses(batch); opt.zero_grad(); l['loss'].backward(); opt.step()
    for k, t in teachers.items():
        assert not t.training
        assert all(p.grad is None and not p.requires_grad for p in t.parameters())
        for n, v in t.state_dict().items(): assert torch.equal(v, before[k][n]), (k, n)   # weights and BN statistics
    assert m.proj.weight.grad is not None and m.student.enc.audio.body[0][0].weight.grad is not None


def test_inference_path_has_no_teacher(batch):
    teachers = _random_teachers(1)
    torch.manual_seed(0); plain = build_model(ModelConfig())
    torch.manual_seed(0); m = D.Distilled(ModelConfig(), D.DistillConfig(audio_weight=1.0, visual_weight=1.0), teachers)
    # same initialisation as the plain model, and its maps are the student's
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), m.student.state_dict().values()))
    m.eval(); plain.eval()
    assert torch.equal(m.maps(batch), plain.maps(batch))
    # checkpoints hold no teacher; the student alone, rebuilt from them, gives the same maps
    sd = m.state_dict()
    assert set(sd) == {f'student.{k}' for k in plain.state_dict()} | {'proj.weight', 'proj.bias'}
    n_teacher = sum(p.numel() for t in teachers.values() for p in t.parameters())
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in plain.parameters()) + m.proj.weight.numel() + m.proj.bias.numel()
    assert n_teacher > 0
    student = build_model(ModelConfig())
    student.load_state_dict({k[8:]: v for k, v in sd.items() if k.startswith('student.')})
    assert torch.equal(student.eval().maps(batch), m.maps(batch))
    # teachers are never called at inference
    calls = []
    for t in teachers.values(): t.register_forward_hook(lambda *a: calls.append(1))
    for t in teachers.values():
        for sub in t.modules(): sub.register_forward_hook(lambda *a: calls.append(1))
    m.maps(batch)
    assert calls == []


def test_zero_weights_is_the_student(batch):
    torch.manual_seed(0); plain = build_model(ModelConfig())
    torch.manual_seed(0); m = D.Distilled(ModelConfig(), D.DistillConfig(), {})
    plain.train(); m.train()
    a, b = plain.losses(batch), m.losses(batch)
    assert set(a) == set(b) and all(torch.allclose(a[k], b[k]) for k in a)


def test_plugin_teachers(tmp_path, batch):
    class A(nn.Module):
        def forward(self, spec): return spec.mean(-1).flatten(1)[:, :16]
    class V(nn.Module):
        def forward(self, img): return img.mean(1, keepdim=True)
    torch.jit.script(A()).save(str(tmp_path / 'a.pt')); torch.jit.script(V()).save(str(tmp_path / 'v.pt'))
    ta = D.load_teacher(f"torchscript:{tmp_path / 'a.pt'}", 'audio'); tv = D.load_teacher(f"torchscript:{tmp_path / 'v.pt'}", 'visual')
    assert ta.dim == 16 and ta.embed(batch).shape == (8, 16) and tv.objectness(batch).shape == batch['image'].shape[:1] + batch['image'].shape[2:]
    import torchvision
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / 'r18.pt')
    tr = D.load_teacher(f"resnet18:{tmp_path / 'r18.pt'}", 'visual')
    o = tr.objectness(batch)
    assert o.shape == (8, 2, 2) and o.min() >= 0 and o.max() <= 1
    with pytest.raises(FileNotFoundError): D.load_teacher(f"torchscript:{tmp_path / 'missing.pt'}", 'audio')
    m = D.Distilled(ModelConfig(), D.DistillConfig(audio_weight=1.0, visual_weight=1.0), {'audio': ta, 'visual': tr})
    assert torch.isfinite(m.losses(batch)['loss'])


def test_visual_teacher_cache_is_atomic_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv('AVSL_CACHE', str(tmp_path))      # an empty cache of its own: a cache left by another run would hold the file
    cfg = D.VisualTeacherConfig(image_size=64, n_images=16, epochs=1, init=None, batch_size=8)
    calls = []
    real = D.pretrain_visual_teacher
    monkeypatch.setattr(D, 'pretrain_visual_teacher', lambda *a, **k: calls.append(1) or real(*a, **k))
    t1 = D.visual_teacher(cfg, log=lambda *a: None)
    t2 = D.visual_teacher(cfg, log=lambda *a: None)
    path = D._weights('visual', cfg)
    assert calls == [1] and path.exists() and path.with_suffix('.json').exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith('.tmp')]
    assert all(torch.equal(a, b) for a, b in zip(t1.state_dict().values(), t2.state_dict().values()))


def test_tiny_run_hint_losses_fall(tiny_bench):
    teachers = _random_teachers(2)
    torch.manual_seed(0)
    m = D.Distilled(ModelConfig(), D.DistillConfig(audio_weight=1.0, visual_weight=1.0), teachers)
    tcfg = TrainConfig.preset('tiny', epochs=4, lr=2e-3)
    m, hist = fit(m, tcfg, AVSLDataset(tiny_bench['train'], view='weak'), AVSLDataset(tiny_bench['val']), log=lambda *a: None)
    for k in ('train_hint_audio', 'train_hint_visual'):
        assert hist[-1][k] < 0.8 * hist[0][k], (k, [h[k] for h in hist])
