import os, tempfile
import pytest

# Generated data goes to a throw-away cache, so tests never depend on (or pollute) ~/.cache.
os.environ.setdefault('AVSL_CACHE', tempfile.mkdtemp(prefix='avsl_test_cache_'))
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('HF_HUB_OFFLINE', '1')


@pytest.fixture(scope='session')
def tiny_cfg():
    from avsl_nbdev.data import SynthConfig
    return SynthConfig.preset('tiny')


@pytest.fixture(scope='session')
def tiny_bench(tiny_cfg):
    from avsl_nbdev.data import load_benchmark
    return load_benchmark(tiny_cfg)
