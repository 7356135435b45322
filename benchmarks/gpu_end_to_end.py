"""The gpu preset end to end: build its benchmark on every core, train Dual Mean-Teacher (stage 1 and stage 2), score it.

    .venv/bin/python benchmarks/gpu_end_to_end.py [--preset gpu] [--seed 0] [--out benchmarks/results/gpu_end_to_end.json]

Writes a JSON with the device, each part's wall time (benchmark build, stage-1 teachers, stage 2, scoring) and the
test scores of the stage-1 teacher and of the stage-2 model (selected on validation AUC). Run it with an empty cache
(`AVSL_CACHE=/tmp/fresh`) to time the build. `--preset tiny` runs the same path on the CPU in about a minute
(`tests/test_benchmarks.py`).
"""
import argparse, json, os, platform, time
from pathlib import Path

import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--preset', default='gpu')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default='benchmarks/results/gpu_end_to_end.json')
    args = ap.parse_args(argv)
    from avsl_nbdev.core import cache_dir
    from avsl_nbdev.data import SynthConfig, load_benchmark, data_workers
    from avsl_nbdev.dmt import DMTConfig, run_dmt, stage2_indices, dmt_labeled_mask
    from avsl_nbdev.train import resolve_device
    t0 = time.perf_counter()
    synth = SynthConfig.preset(args.preset)
    bench = load_benchmark(synth)
    t_build = time.perf_counter() - t0
    cfg = DMTConfig.preset(args.preset, seed=args.seed)
    t1 = time.perf_counter()
    r = run_dmt(cfg, synth)
    t_run = time.perf_counter() - t1
    seconds = lambda rows: sum(row['seconds'] for row in rows)
    hist = r['history']
    stage1 = seconds(hist['teacher_a']) + seconds(hist.get('teacher_b', []))
    device = resolve_device(cfg.device)
    res = {
        'device': torch.cuda.get_device_name() if device.type == 'cuda' else f'CPU ({platform.processor() or platform.machine()})',
        'torch': torch.__version__, 'cores': data_workers(), 'preset': args.preset, 'seed': args.seed,
        'date': time.strftime('%Y-%m-%d'), 'cache': str(cache_dir()),
        'command': f'benchmarks/gpu_end_to_end.py --preset {args.preset} --seed {args.seed}',
        'seconds': {'benchmark_build': round(t_build, 1), 'stage1_teachers': round(stage1, 1),
                    'stage2': round(seconds(hist['stage2']), 1),
                    'scoring_and_overhead': round(t_run - stage1 - seconds(hist['stage2']), 1),
                    'total': round(time.perf_counter() - t0, 1)},
        'stage2_epochs': len(hist['stage2']),
        'test': {'stage1': {k: r['stage1']['test'][k] for k in ('ciou50', 'auc')},
                 'stage2': {k: r['stage2']['test'][k] for k in ('ciou50', 'auc')}},
        'val_auc': {'stage1': r['stage1']['val']['auc'], 'stage2': r['stage2']['val']['auc']},
    }
    n2 = len(stage2_indices(dmt_labeled_mask(cfg, bench), cfg.labeled_frac, cfg.unlabeled, cfg.labeled_seed)) // cfg.batch_size * cfg.batch_size
    res['stage2_samples_per_s'] = round(n2 * len(hist['stage2']) / max(seconds(hist['stage2']), 1e-9), 1)   # validation included
    print(json.dumps(res, indent=1))
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__':
    main()
