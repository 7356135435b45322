"""Does bf16 autocast cost EZ-VSL accuracy through its contrastive logits? A measurement, not a training mode.

    AVSL_CPU_THREADS=1 .venv/bin/python benchmarks/fp32_logits.py [--preset cpu] [--seeds 0,1,2]
        [--cache ~/.cache/avsl_nbdev-fp32-logits] [--out benchmarks/results/fp32_logits_cpu.csv]

Trains chapter 4b's EZ-VSL recipe (`train.baseline_grid`) exactly as the project does, bf16 autocast included, except
that the audio-visual similarities — the contrastive logits cos/τ and the localization maps — are computed in fp32
(`contrastive.similarity` and `contrastive.loc_map` run with autocast off). In bf16 a cosine near 0.5 is stored to
about 0.004, which τ = 0.03 turns into steps of 0.13 in the logits. The runs go to their own cache and runs folder (`--cache`, which
borrows the main cache's benchmark and weights by symbolic links), because their configuration keys are the ordinary
runs' keys. It only differs from the ordinary runs on a CPU or GPU where `train.autocast` uses bf16. Writes one row per
seed: test and validation scores, minutes, the arithmetic.
"""
import argparse, os, platform
from pathlib import Path


def fp32_similarities():
    "Patch `contrastive.similarity` and `contrastive.loc_map` to compute in fp32 under autocast (this process only)."
    import torch
    import avsl_nbdev.contrastive as C
    def fp32(f):
        def g(v, a, tau):
            with torch.autocast(v.device.type, enabled=False): return f(v.float(), a.float(), tau)
        return g
    C.similarity, C.loc_map = fp32(C.similarity), fp32(C.loc_map)


def cpu_name() -> str:
    "The CPU's model name (Linux), else the platform's."
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--preset', default='cpu')
    ap.add_argument('--seeds', default='0,1,2')
    ap.add_argument('--cache', default=str(Path.home() / '.cache' / 'avsl_nbdev-fp32-logits'))
    ap.add_argument('--out', default='benchmarks/results/fp32_logits_cpu.csv')
    args = ap.parse_args(argv)
    from avsl_nbdev.core import cache_dir
    main_cache, cache = cache_dir(), Path(args.cache).expanduser()
    if cache.resolve() == main_cache.resolve(): raise SystemExit(f"--cache {cache}: must not be the main cache, whose runs share these keys")
    cache.mkdir(parents=True, exist_ok=True)
    for sub in ('synthav', 'weights'):                       # the same benchmark and pretrained weights, not re-made
        (main_cache / sub).mkdir(parents=True, exist_ok=True)
        if not (cache / sub).exists(): (cache / sub).symlink_to(main_cache / sub)
    os.environ['AVSL_CACHE'], os.environ['AVSL_RUNS'] = str(cache), str(cache / 'runs')     # $AVSL_RUNS too: never the shared runs
    fp32_similarities()
    import pandas as pd
    from avsl_nbdev.train import baseline_grid
    seeds = tuple(int(s) for s in args.seeds.split(','))
    rows = []
    for r in baseline_grid(args.preset, seeds=seeds, names=['EZ-VSL'], log=lambda s: None):
        rows.append({'model': 'EZ-VSL, similarities in fp32', 'seed': r['train']['seed'],
                     **{c: round(r['test'][c], 4) for c in ('ciou50', 'auc', 'mse', 'fpr95')},
                     'val_auc': round(r['val']['auc'], 4), 'val_ciou50': round(r['val']['ciou50'], 4),
                     'minutes': round(r['train_seconds'] / 60, 1), 'cpu_threads': r['history'][-1].get('cpu_threads'),
                     'arithmetic': 'bf16 autocast, similarities fp32', 'machine': cpu_name(),
                     'command': 'benchmarks/fp32_logits.py --preset ' + args.preset + ' --seeds ' + args.seeds})
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    print(pd.DataFrame(rows).iloc[:, :8].to_string(index=False))
    return rows


if __name__ == '__main__':
    main()
