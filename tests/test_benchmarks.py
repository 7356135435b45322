"""The benchmark scripts run end to end at the tiny preset on the CPU (their real runs: the gpu and cpu presets)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(name, args, tmp_path):
    env = {**os.environ, 'AVSL_CACHE': str(tmp_path / 'cache'), 'AVSL_RUNS': str(tmp_path / 'runs')}
    p = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / name), *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_gpu_end_to_end_script_at_tiny(tmp_path):
    out = tmp_path / 'e2e.json'
    _script('gpu_end_to_end.py', ['--preset', 'tiny', '--out', str(out)], tmp_path)
    r = json.loads(out.read_text())
    assert r['preset'] == 'tiny' and r['stage2_epochs'] == 2 and r['stage2_samples_per_s'] > 0
    s = r['seconds']
    assert all(s[k] > 0 for k in ('benchmark_build', 'stage1_teachers', 'stage2', 'total'))
    assert s['total'] >= s['benchmark_build'] + s['stage1_teachers'] + s['stage2']
    for stage in ('stage1', 'stage2'):
        assert all(0 <= r['test'][stage][k] <= 1 for k in ('ciou50', 'auc'))


def test_profile_script_at_tiny(tmp_path):
    out = tmp_path / 'profile.json'
    _script('profile_epoch.py', ['--preset', 'tiny', '--label', 'a', '--out', str(out)], tmp_path)
    _script('profile_epoch.py', ['--preset', 'tiny', '--label', 'b', '--out', str(out)], tmp_path)
    r = json.loads(out.read_text())
    assert set(r) == {'a', 'b'}                                          # labels add up in one file
    for ep in ('stage1_epoch', 'stage2_epoch'):
        sec = r['a'][ep]
        assert sec['total'] > 0 and abs(sum(v for k, v in sec.items() if k != 'total') - sec['total']) < 0.01
        assert sec['backward'] > 0 and sec['training forward'] > 0 and sec['validation'] > 0
    assert r['a']['stage2_epoch']['teacher forward'] > 0 and r['a']['stage2_epoch']['EMA'] > 0

