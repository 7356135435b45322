"""Training throughput (samples/s) of each model and preset on the current device.

    .venv/bin/python benchmarks/throughput.py [--presets cpu gpu] [--steps 5] [--out benchmarks/results]

Uses random tensors of each preset's shapes (no data loading: that is measured separately
by the scale chapter), runs full optimiser steps through the models' `losses`, with bf16
autocast and channels-last on CUDA, and synchronises only around the timed loop.
"""
import argparse, json, platform, time
from pathlib import Path

import torch

from avsl_nbdev.contrastive import ModelConfig, build_model
from avsl_nbdev.data import SynthConfig, AudioConfig
from avsl_nbdev.train import TrainConfig, resolve_device, autocast

ENCODERS = {'tiny': ('cnn', 'vggish-small'), 'cpu': ('cnn', 'vggish-small'), 'gpu': ('resnet18', 'vggish')}
MODELS = {'EZ-VSL': dict(method='ezvsl'), 'SLAVC': dict(method='slavc'),
          'box-supervised': dict(method='ezvsl', contrastive_weight=0.0, box_weight=1.0)}


def fake_batch(preset, B, device):
    s, a = SynthConfig.preset(preset), AudioConfig()
    L, S = s.n_samples, s.image_size
    return {'image': torch.randn(B, 3, S, S, device=device).contiguous(memory_format=torch.channels_last) if device.type == 'cuda'
            else torch.randn(B, 3, S, S, device=device),
            'wave': torch.randn(B, 1, L, device=device) * 0.1,
            'spec': torch.randn(B, 1, a.n_mels, L // a.hop_length + 1, device=device),
            'mask': (torch.rand(B, 1, S, S, device=device) > 0.8).float()}


def measure(preset, name, device, steps):
    visual, audio = ENCODERS[preset]
    model = build_model(ModelConfig(visual=visual, audio=audio, **MODELS[name])).to(device)
    if device.type == 'cuda': model.to(memory_format=torch.channels_last)
    B = TrainConfig.preset(preset).batch_size
    batch, lab = fake_batch(preset, B, device), torch.ones(B, dtype=torch.bool, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    def step():
        with autocast(device): loss = model.losses(batch, lab)['loss']
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); model.step_end()
    step(); step()                                           # warm-up
    if device.type == 'cuda': torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps): step()
    if device.type == 'cuda': torch.cuda.synchronize()
    return B * steps / (time.perf_counter() - t0), B


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--presets', nargs='+', default=['cpu', 'gpu'])
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--out', default=None, help='folder for a JSON copy of the table')
    args = ap.parse_args()
    device = resolve_device('auto')
    name = torch.cuda.get_device_name() if device.type == 'cuda' else f'CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)'
    rows = []
    print(f"device: {name}; torch {torch.__version__}")
    print(f"{'preset':6} {'model':15} {'batch':>5} {'samples/s':>10}")
    for preset in args.presets:
        for m in MODELS:
            sps, B = measure(preset, m, device, args.steps)
            rows.append(dict(preset=preset, model=m, batch=B, samples_per_s=round(sps, 1)))
            print(f"{preset:6} {m:15} {B:5d} {sps:10.1f}", flush=True)
    if args.out:
        out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
        tag = 'cuda' if device.type == 'cuda' else 'cpu'
        (out / f'throughput_{tag}.json').write_text(json.dumps({'device': name, 'torch': torch.__version__, 'rows': rows}, indent=1))


if __name__ == '__main__':
    main()
