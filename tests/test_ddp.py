"""DDP with `torchrun` (gloo backend, 2 CPU processes) against one process with the same global batch.

With BatchNorm frozen (it cannot be synchronised on CPU; on GPUs the trainer converts it to SyncBatchNorm), two
processes must reproduce one process to float tolerance: same batches step for step (`train.shard_order`), contrastive
negatives from the global batch (`core.gather_batch`), the box loss normalised by the global count, averaged gradients.
DMT under DDP: both processes end with identical teachers (EMA of identical students) and the pseudo-label counts are
summed over processes."""
import os, socket, subprocess, sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker  # noqa: E402
from avsl_nbdev.encoders import weights_difference  # noqa: E402


def _torchrun(mode, out, timeout=600, **env):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': '', **env}     # gloo on CPUs, even on a GPU machine
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1', f'--master_port={port}',
           str(Path(__file__).parent / 'ddp_worker.py'), mode, str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return [torch.load(out / f'{mode}_rank{r}.pt', weights_only=False) for r in (0, 1)]


def test_shard_order_is_the_single_process_order():
    from avsl_nbdev.train import make_loader, shard_order
    ds = [{'image': torch.zeros(1), 'spec': torch.zeros(1), 'wave': torch.zeros(1), 'mask': torch.zeros(1),
           'boxes': torch.zeros(0, 4), 'id': str(i), 'index': i, 'kind': 0} for i in range(50)]
    single = [b['index'].tolist() for b in make_loader(ds, 8, True, 0, seed=123, drop_last=True)]
    shards = [shard_order(50, 8, 123, 2, r) for r in (0, 1)]
    for t, batch in enumerate(single):
        assert shards[0][4 * t: 4 * t + 4] + shards[1][4 * t: 4 * t + 4] == batch


@pytest.mark.parametrize('mode', ['fit', 'fit_slavc'])
def test_ddp_two_processes_equal_one(tmp_path, mode):
    "EZ-VSL (max-MIL negatives) and SLAVC (two heads, momentum targets, gathered 8 ways) with the box loss."
    r0, r1 = _torchrun(mode, tmp_path)
    ref = ddp_worker.run(mode)
    assert all(torch.equal(v, r1['state'][k]) for k, v in r0['state'].items())  # the processes stay identical
    diff = weights_difference(r0['state'], ref['state'])[1]       # relative L2 distance of the states
    print(f"\nDDP (2 processes) vs one process, {mode}, frozen BatchNorm, 12 Adam steps: relative parameter distance {diff:.1e}")
    # Float order only, amplified: measured 2e-5 with the stride-16 CNN, 3.7e-4 at stride 8 on an Intel Xeon; on an AMD
    # EPYC with AVX-512 (2026-12-07) 2.3e-3 for EZ-VSL but 1.7e-5 for SLAVC, while one process with 1 vs 2 threads differs
    # by 1.6e-6 and the visual trunk's forward pass is bit-equal for one batch of 16 and two of 8. EZ-VSL's max over
    # locations (max-MIL) is the likely amplifier: two locations within float noise of each other, another one picked,
    # another gradient. A wrong gradient gave 1.0 and more.
    assert diff < 1e-2, diff
    for a, b in zip(r0['history'], ref['history']):
        # float summation order only: 1e-4 relative with the stride-16 CNN; with the stride-8 one up to 2.3e-3 was measured
        # (2026-12-02, not yet explained beyond that; a wrong gradient moves it by far more)
        assert abs(a['train_loss'] - b['train_loss']) < 5e-3 * max(1, abs(b['train_loss'])), (a['train_loss'], b['train_loss'])
        # a clip of the tiny split crossing one of the 21 cIoU thresholds moves AUC by about 0.05 / n: two crossed on the
        # Intel machine, five on the AMD one (0.0061 of 41 clips, with the parameter distance above at 2.3e-3): allow eight
        assert abs(a['val_auc'] - b['val_auc']) <= 8 * 0.05 / max(1, a.get('val_n', 48)) + 1e-6
    assert (tmp_path / mode / 'last.pt').exists() and (tmp_path / mode / 'history.json').exists()   # written by rank 0


def test_dmt_under_ddp(tmp_path):
    r0, r1 = _torchrun('dmt', tmp_path)
    assert any(k.startswith('teachers.') for k in r0['state'])
    assert all(torch.equal(v, r1['state'][k]) for k, v in r0['state'].items())    # students and EMA teachers identical
    ref = ddp_worker.run('dmt', tmp_path / 'one')
    h, g = r0['history'][0], ref['history'][0]
    assert h['train_pl_unlabeled'] == g['train_pl_unlabeled']        # counts summed over the 2 processes = one process's
    # (accepted counts differ: each process draws its own weak-view crops, so the teachers see other pixels)
    assert 0 <= h['train_pl_accept_rate'] <= 1


def test_dmt_warm_start_under_ddp(tmp_path):
    "DMTConfig.warm_start under torchrun: both processes train each missing self-supervised run together, then start from it."
    runs = tmp_path / 'runs'                                             # an empty run cache: the warm-start runs are trained here
    r0, r1 = _torchrun('dmt_warm', tmp_path, AVSL_RUNS=str(runs))
    assert all(torch.equal(v, r1['state'][k]) for k, v in r0['state'].items())
    done = sorted(p.parent.name for p in runs.glob('ez-vsl-*/result.json'))
    assert len(done) == 2 and all((runs / d / 'best.pt').exists() for d in done)    # one run per teacher's encoders, once
