"""Where one stage-1 epoch and one stage-2 epoch of Dual Mean-Teacher spend their time, on the CPU.

    .venv/bin/python benchmarks/profile_epoch.py [--preset cpu] [--label after] [--out benchmarks/results/profile_cpu.json]

Runs `train.fit` exactly as `dmt.train` calls it — one stage-1 epoch of teacher A (D_l repeated to
`stage1_samples`) and one stage-2 epoch of the DMT module (two teachers, two students) — with the library's own
functions wrapped by timers. Each section's time is *self* time: a wrapped call nested in another (the teachers'
forward inside the pseudo-labelling, the metrics inside validation) is counted once, in the inner section. Nothing
is written into the run cache (the epochs train in a temporary folder; checkpoints and histories are timed there).
Networks start from their fresh weights: the amount of arithmetic does not depend on them.

Sections: `data` (batches and their weak view), `teacher forward` (both teachers' maps), `pseudo-labels`
(binarisation, consensus, IPL, targets), `pseudo-label stats`, `strong view`, `training forward` (the trained networks' (stage 2: the students')
losses: encoders, contrastive and box terms), `backward`, `optimiser`, `EMA` (teachers' update), `validation`
(the validation split's forward passes), `metrics` (scoring those maps), `checkpoints`, `history`; `other` is the
rest of the epoch. The JSON keeps one entry per `--label`, so a before/after pair lives in one file.
"""
import argparse, contextlib, functools, json, os, platform, tempfile, time
from pathlib import Path

import torch

SECTIONS = {}     # name -> [self seconds, calls]
_STACK = []       # running sections: [name, start, seconds spent in nested sections]


def timed(name, fn):
    "`fn` wrapped to add its self time (minus nested timed calls) to `SECTIONS[name]`."
    @functools.wraps(fn)
    def wrapper(*a, **k):
        _STACK.append([name, time.perf_counter(), 0.0])
        try: return fn(*a, **k)
        finally:
            n, t0, inner = _STACK.pop()
            dt = time.perf_counter() - t0
            s = SECTIONS.setdefault(n, [0.0, 0]); s[0] += dt - inner; s[1] += 1
            if _STACK: _STACK[-1][2] += dt
    return wrapper


def patch(obj, attr, name):
    setattr(obj, attr, timed(name, getattr(obj, attr)))


def instrument():
    "Wrap the library functions an epoch calls (module attributes are looked up at call time)."
    import avsl_nbdev.train as tr, avsl_nbdev.dmt as dmt, avsl_nbdev.data as data, avsl_nbdev.metrics as met
    import avsl_nbdev.contrastive as con, avsl_nbdev.core as core
    patch(data.AVSLDataset, '__getitems__', 'data')
    patch(con.AVSLModel, 'localize', 'teacher forward')          # inside validation it counts as validation (below)
    patch(dmt.DualMeanTeacher, 'pseudo_labels', 'pseudo-labels')
    patch(dmt.DualMeanTeacher, '_record', 'pseudo-label stats')
    patch(dmt, 'strong_view', 'strong view')
    patch(con.AVSLModel, 'losses', 'training forward')
    patch(torch.Tensor, 'backward', 'backward')
    patch(torch.optim.AdamW, 'step', 'optimiser')
    patch(dmt.DualMeanTeacher, 'step_end', 'EMA')
    patch(tr, 'evaluate', 'validation')
    patch(met.LocalizationMeter, 'update', 'metrics')
    patch(met.LocalizationMeter, 'compute', 'metrics')
    patch(tr, 'atomic_save', 'checkpoints')
    patch(tr, '_write_history', 'history')
    # the teachers' forward inside validation is validation's own work
    loc = con.AVSLModel.localize
    def localize(self, batch):
        if any(s[0] == 'validation' for s in _STACK): return loc.__wrapped__(self, batch)
        return loc(self, batch)
    con.AVSLModel.localize = localize


def epoch(label, run):
    "Time `run()` (one epoch) and return its sections, `other` and the total."
    SECTIONS.clear()
    t0 = time.perf_counter()
    run()
    total = time.perf_counter() - t0
    out = {k: round(v[0], 3) for k, v in sorted(SECTIONS.items(), key=lambda kv: -kv[1][0])}
    out['other'] = round(total - sum(v[0] for v in SECTIONS.values()), 3)
    out['total'] = round(total, 3)
    print(f"{label}: {total:.1f} s  " + ', '.join(f"{k} {v:.1f}" for k, v in out.items() if k != 'total'), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--preset', default='cpu')
    ap.add_argument('--label', default='current', help='name of this measurement in the JSON (e.g. before, after)')
    ap.add_argument('--out', default='benchmarks/results/profile_cpu.json')
    args = ap.parse_args()
    import dataclasses
    from avsl_nbdev.core import cpu_threads
    from avsl_nbdev.data import SynthConfig, load_benchmark, split_dataset
    from avsl_nbdev.contrastive import build_model
    from avsl_nbdev import dmt
    from avsl_nbdev.teachers import repeat_to

    synth = SynthConfig.preset(args.preset)
    bench = load_benchmark(synth)
    cfg = dmt.DMTConfig.preset(args.preset, object_pretrain=None, device='cpu')
    is_lab = dmt.dmt_labeled_mask(cfg, bench)
    mcfgs = dmt.model_configs(cfg)
    instrument()
    from avsl_nbdev.train import fit
    res = {'preset': args.preset, 'cpu_threads': cpu_threads(), 'machine': platform.processor() or platform.machine(),
           'cpu_capability': torch.backends.cpu.get_cpu_capability(), 'torch': torch.__version__,
           'date': time.strftime('%Y-%m-%d'),
           'command': f'benchmarks/profile_epoch.py --preset {args.preset} --label {args.label}'}
    val = split_dataset(bench['val'])
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        t = build_model(mcfgs[0])
        ds1 = split_dataset(bench['train'], 'weak', repeat_to(torch.nonzero(is_lab).flatten().numpy(), cfg.stage1_samples))
        res['stage1_epoch'] = epoch('stage 1, one teacher, one epoch', lambda: fit(
            t, dmt._train_cfg(cfg, 1, 0), ds1, val, out_dir=Path(tmp) / 's1', is_labeled=is_lab, log=lambda *a: None))
        res['stage1_samples'] = len(ds1)
        teachers = [build_model(m).eval() for m in mcfgs]
        ds2 = split_dataset(bench['train'], 'weak', dmt.stage2_indices(is_lab, cfg.labeled_frac, cfg.unlabeled, cfg.labeled_seed))
        model = dmt.DualMeanTeacher(cfg, teachers, total_steps=len(ds2) // cfg.batch_size)
        res['stage2_epoch'] = epoch('stage 2, one epoch', lambda: fit(
            model, dmt._train_cfg(cfg, 1, 0, stage=2), ds2, val, out_dir=Path(tmp) / 's2', is_labeled=is_lab, log=lambda *a: None))
        res['stage2_samples'] = len(ds2)
    out = Path(args.out)
    allres = json.loads(out.read_text()) if out.exists() else {}
    allres[args.label] = res
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(allres, indent=1) + '\n')
    print(f"wrote {out} [{args.label}]")


if __name__ == '__main__':
    main()
