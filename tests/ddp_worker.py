"""Started by tests/test_ddp.py under `torchrun --nproc_per_node=2` (gloo, CPU), and called in-process for the
one-process reference. `python ddp_worker.py MODE OUT`: rank r writes OUT/rank{r}.pt with its final state and history."""
import sys
from pathlib import Path

import torch

from avsl_nbdev.core import init_distributed, dist_rank, seed_everything
from avsl_nbdev.data import SynthConfig, load_benchmark, AVSLDataset
from avsl_nbdev.contrastive import ModelConfig, EZVSL, SLAVC
from avsl_nbdev.train import TrainConfig, fit


def frozen_bn(cls):
    "The model class with its BatchNorms kept in eval mode: on CPU, BatchNorm cannot be synchronised across processes."
    class Frozen(cls):
        def train(self, mode: bool = True):
            super().train(mode)
            for m in self.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm): m.eval()
            return self
    return Frozen


def run(mode: str, out=None) -> dict:
    bench = load_benchmark(SynthConfig.preset('tiny'))
    if mode in ('fit', 'fit_slavc'):
        seed_everything(0)
        if mode == 'fit': model = frozen_bn(EZVSL)(ModelConfig(method='ezvsl', dim=16, box_weight=1.0))
        else: model = frozen_bn(SLAVC)(ModelConfig(method='slavc', dim=16, box_weight=1.0, vdrop=0.0))   # no dropout: no per-process RNG
        cfg = TrainConfig(epochs=2, batch_size=16, num_workers=0, labeled=0.5, amp=False, eval_batch_size=48, seed=0, device='cpu')
        model, hist = fit(model, cfg, AVSLDataset(bench['train']), AVSLDataset(bench['val']), out_dir=out, log=lambda *a: None)
        return {'state': model.state_dict(), 'history': hist}
    if mode == 'dmt':
        from avsl_nbdev.dmt import DMTConfig, train
        cfg = DMTConfig.preset('tiny', dim=16, object_pretrain=None, batch_size=16, stage1_epochs=1, stage2_epochs=1, device='cpu')
        r = train(cfg, bench, out_dir=out, log=lambda *a: None)
        return {'state': r['model'].state_dict(), 'history': r['history']['stage2']}
    if mode == 'dmt_warm':                          # the self-supervised warm-start runs are trained under torchrun too
        from avsl_nbdev.dmt import DMTConfig, train
        cfg = DMTConfig.preset('tiny', dim=16, object_pretrain=None, batch_size=16, stage1_epochs=1, stage2_epochs=1,
                               device='cpu', warm_start='tiny')
        r = train(cfg, SynthConfig.preset('tiny'), out_dir=out, log=lambda *a: None)
        return {'state': r['model'].state_dict(), 'teachers': [t.state_dict() for t in r['teachers']]}
    raise ValueError(mode)


if __name__ == '__main__':
    mode, out = sys.argv[1], Path(sys.argv[2])
    init_distributed()
    res = run(mode, out / mode)
    torch.save(res, out / f'{mode}_rank{dist_rank()}.pt')
