"""Training throughput (samples/s) on the current device: model steps, data loading, and both together.

    .venv/bin/python benchmarks/throughput.py [--presets cpu gpu] [--steps 5] [--batch B] [--compile]
                                              [--data-preset cpu] [--out benchmarks/results]

1. Model steps on random tensors of each preset's shapes, full optimiser steps through the models' `losses`, for
   EZ-VSL, SLAVC, the box-supervised oracle and a Dual Mean-Teacher step (two EMA teachers + two students around
   EZ-VSL), each in two variants from the same run:
   - `optimised`: what `train.fit` does — bf16 autocast and channels-last on CUDA, no host synchronisation per step
     (optionally `torch.compile`);
   - `fp32 reference`: a plain loop — strict fp32 (TF32 off), NCHW, `loss.item()` every step (a host sync, as a
     logging loop does).
   The speed-up is the ratio of the two. On the CPU autocast and channels-last are off in both, so the ratio is ~1.
2. Data loading alone: `train.make_loader` over the embedded benchmark's weak view (`--data-preset`), and over the
   real-data loader (`realdata.RealAVDataset`: JPEG decode + EZ-VSL spectrogram) on made-up 224-px clips, decoding
   the audio and then reading it from its cache (`audio_cache=`).
3. Input pipeline vs model: a DMT training loop fed by the loader, timing the wait for each batch and the step
   (synchronised for the measurement only); the fraction of time spent waiting for data.
"""
import argparse, json, platform, tempfile, time
from pathlib import Path

import torch

from avsl_nbdev.contrastive import ModelConfig, build_model
from avsl_nbdev.data import SynthConfig, AudioConfig, AVSLDataset, load_benchmark
from avsl_nbdev.train import TrainConfig, resolve_device, autocast, make_loader, to_device
from avsl_nbdev.dmt import DMTConfig, DualMeanTeacher, model_configs

MODELS = {'EZ-VSL': dict(method='ezvsl'), 'SLAVC': dict(method='slavc'),
          'box-supervised': dict(method='ezvsl', contrastive_weight=0.0, box_weight=1.0), 'DMT': None}


def fake_batch(preset, B, device, channels_last):
    s, a = SynthConfig.preset(preset), AudioConfig()
    L, S = s.n_samples, s.image_size
    img = torch.randn(B, 3, S, S, device=device)
    return {'image': img.contiguous(memory_format=torch.channels_last) if channels_last else img,
            'wave': torch.randn(B, 1, L, device=device) * 0.1,
            'spec': torch.randn(B, 1, a.n_mels, L // a.hop_length + 1, device=device),
            'mask': (torch.rand(B, 1, S, S, device=device) > 0.8).float(), 'index': torch.arange(B, device=device)}


def build(preset, name):
    d = DMTConfig.preset(preset, object_pretrain=None)     # speed only: the starting weights do not matter, so nothing is pretrained
    if name == 'DMT':
        teachers = [build_model(m) for m in model_configs(d)]
        return DualMeanTeacher(d, teachers)
    return build_model(ModelConfig(visual=d.visual, audio=d.audio_a, visual_weights=d.visual_weights, **MODELS[name]))


def measure(preset, name, device, steps, B, optimised, compile_=False):
    torch.manual_seed(0)
    cuda = device.type == 'cuda'
    model = build(preset, name).to(device)
    if optimised and cuda: model.to(memory_format=torch.channels_last)
    batch = fake_batch(preset, B, device, optimised and cuda)
    lab = torch.arange(B, device=device) % 2 == 0
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    losses = torch.compile(model.losses) if compile_ else model.losses
    if cuda:                                                  # the reference is strict fp32 (no TF32 matmuls or convolutions)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = optimised
    def step():
        with autocast(device, enabled=optimised): loss = losses(batch, lab)['loss']
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); model.step_end()
        if not optimised: loss.item()                       # the reference loop logs every step
    step(); step()                                            # warm-up (and compilation)
    if cuda: torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps): step()
    if cuda: torch.cuda.synchronize()
    return B * steps / (time.perf_counter() - t0)


def loading(ds, B, workers, batches, device):
    "Samples/s over `batches` batches, timed from the iterator's creation (worker start-up and prefetch included)."
    t0 = time.perf_counter()
    it = iter(make_loader(ds, B, True, workers, seed=0, drop_last=True, device=device))
    n = 0
    for _ in range(batches):
        b = next(it); b = to_device(b, device); n += len(b['index'])
    if device.type == 'cuda': torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def pipeline(preset, ds, device, B, workers, steps):
    "A DMT loop fed by the loader: seconds waiting for batches vs in steps."
    cuda = device.type == 'cuda'
    model = build(preset, 'DMT').to(device)
    if cuda: model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    it = iter(make_loader(ds, B, True, workers, seed=0, drop_last=True, device=device))
    wait = work = 0.0
    for k in range(steps + 1):
        t0 = time.perf_counter()
        b = to_device(next(it), device, cuda)
        if cuda: torch.cuda.synchronize()
        t1 = time.perf_counter()
        lab = torch.arange(len(b['index']), device=device) % 2 == 0
        with autocast(device): loss = model.losses(b, lab)['loss']
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); model.step_end()
        if cuda: torch.cuda.synchronize()
        if k: wait += t1 - t0; work += time.perf_counter() - t1        # step 0 = warm-up
    return {'wait_s': wait, 'step_s': work, 'data_wait_fraction': wait / (wait + work), 'samples_per_s': B * steps / (wait + work)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--presets', nargs='+', default=['cpu', 'gpu'])
    ap.add_argument('--models', nargs='+', default=list(MODELS))
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--batch', type=int, default=None, help="batch size (default: each preset's)")
    ap.add_argument('--compile', action='store_true', help='also measure the optimised step under torch.compile')
    ap.add_argument('--data-preset', default=None, help='benchmark preset for the data-loading rows (default: cpu on the CPU, else gpu)')
    ap.add_argument('--workers', type=int, default=None, help='DataLoader workers (default: the data preset\'s)')
    ap.add_argument('--out', default=None, help='folder for a JSON copy of the results')
    args = ap.parse_args()
    device = resolve_device('auto')
    name = torch.cuda.get_device_name() if device.type == 'cuda' else f'CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)'
    res = {'device': name, 'torch': torch.__version__, 'command': 'benchmarks/throughput.py ' + ' '.join(
        f'--{k.replace("_", "-")} {" ".join(map(str, v)) if isinstance(v, list) else v}' for k, v in vars(args).items()
        if v not in (None, False)), 'steps': [], 'loading': [], 'pipeline': None}
    print(f"device: {name}; torch {torch.__version__}")
    print(f"{'preset':6} {'model':15} {'batch':>5} {'optimised':>10} {'fp32 ref':>9} {'ratio':>6}" + ('  compiled' if args.compile else ''))
    for preset in args.presets:
        B = args.batch or DMTConfig.preset(preset).batch_size
        for m in args.models:
            opt_sps = measure(preset, m, device, args.steps, B, True)
            ref_sps = measure(preset, m, device, args.steps, B, False)
            row = dict(preset=preset, model=m, batch=B, optimised=round(opt_sps, 1), fp32_reference=round(ref_sps, 1),
                       speedup=round(opt_sps / ref_sps, 2))
            if args.compile: row['compiled'] = round(measure(preset, m, device, args.steps, B, True, compile_=True), 1)
            res['steps'].append(row)
            print(f"{preset:6} {m:15} {B:5d} {opt_sps:10.1f} {ref_sps:9.1f} {opt_sps / ref_sps:6.2f}"
                  + (f"  {row['compiled']:8.1f}" if args.compile else ''), flush=True)
    dp = args.data_preset or ('gpu' if device.type == 'cuda' else 'cpu')
    workers = args.workers if args.workers is not None else TrainConfig.preset(dp).num_workers
    B = args.batch or DMTConfig.preset(dp).batch_size
    bench = load_benchmark(SynthConfig.preset(dp))
    ds = AVSLDataset(bench['train'], view='weak')
    sps = loading(ds, B, workers, max(3, args.steps, 4 * workers), device)
    res['loading'].append(dict(data=f'SynthAV {dp} (weak view)', batch=B, workers=workers, samples_per_s=round(sps, 1)))
    print(f"data loading, SynthAV {dp}: {sps:.1f} samples/s (batch {B}, {workers} workers)")
    from avsl_nbdev.realdata import RealAVDataset, write_example
    with tempfile.TemporaryDirectory() as tmp:
        nb = max(2, 2 * workers)
        ids = write_example(tmp, 'vggss', n=nb * B, size=(320, 240), seconds=10.0, sample_rate=16000)
        real = RealAVDataset(tmp, ids, 'vggss', image_size=224, view='weak', audio_cache=Path(tmp) / 'cache')
        sps = loading(real, B, workers, nb, device)              # first pass: decodes and fills the audio cache
        cached = loading(real, B, workers, nb, device)           # second pass: audio from the cache
    res['loading'].append(dict(data='RealAVDataset, VGG-SS layout (JPEG + 10-s WAV -> EZ-VSL spectrogram), 224 px', batch=B,
                               workers=workers, samples_per_s=round(sps, 1)))
    res['loading'].append(dict(data='the same, audio from its cache (float16 wave + spectrogram)', batch=B,
                               workers=workers, samples_per_s=round(cached, 1)))
    print(f"data loading, real-data loader (224 px, EZ-VSL spectrogram): {sps:.1f} samples/s; audio cached: {cached:.1f}")
    p = pipeline(dp, ds, device, B, workers, max(2, args.steps))
    res['pipeline'] = dict(preset=dp, batch=B, workers=workers, **{k: round(v, 3) for k, v in p.items()})
    print(f"DMT loop fed by the loader ({dp}): {p['samples_per_s']:.1f} samples/s, {100 * p['data_wait_fraction']:.0f} % of the time waiting for data")
    if args.out:
        out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
        tag = 'cuda' if device.type == 'cuda' else 'cpu'
        (out / f'throughput_{tag}.json').write_text(json.dumps(res, indent=1))


if __name__ == '__main__':
    main()
