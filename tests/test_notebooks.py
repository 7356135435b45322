"""The notebooks as readers get them: small enough to open on GitHub, no saved widget state, and a README that is the
front-page notebook rendered (tests/render_readme.py)."""
import json
from pathlib import Path
import pytest
from render_readme import ROOT, render

NOTEBOOKS = sorted((ROOT / 'nbs').glob('*.ipynb'))

@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_small_and_has_no_widget_state(path):
    assert path.stat().st_size < 300_000, f'{path.name}: {path.stat().st_size:,} bytes (at most 300 KB)'
    assert 'widgets' not in json.loads(path.read_text())['metadata'], f'{path.name} holds saved widget state'

def test_readme_is_the_rendered_front_page():
    text = render()
    assert (ROOT / 'README.md').read_text() == text, 'README.md differs from nbs/index.ipynb: run python tests/render_readme.py'
    assert len(text.encode()) <= 12_000
    for link in ('nbs/15_report.ipynb', 'figures/ablation_ratios_cpu-pretrained-fp32sim.png', 'make demo', 'make test'):
        assert link in text, link
    assert '](../' not in text                                   # every link resolved from the repository root

def test_render_rewrites_links(tmp_path):
    nb = {'cells': [{'cell_type': 'markdown', 'id': 'c0', 'metadata': {}, 'source': ['[r](15_report.ipynb) ![f](../figures/a.png) [w](https://x.org/a.ipynb)']}],
          'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}
    (tmp_path / 'index.ipynb').write_text(json.dumps(nb))
    out = render(tmp_path / 'index.ipynb')
    assert '[r](nbs/15_report.ipynb)' in out and '![f](figures/a.png)' in out and '[w](https://x.org/a.ipynb)' in out


def test_imports_run_downward_in_chapter_order():
    "A module imports only modules of earlier chapters (notebook order), so the chapters can be read top to bottom."
    import re
    order = {}
    for p in NOTEBOOKS:
        m = re.search(r'#\|\s*default_exp\s+(\w+)', p.read_text())
        if m: order[m.group(1)] = p.name
    assert {'core', 'data', 'dmt', 'dmt_cli', 'ablations'} <= set(order)
    upward = []
    for mod, nb in order.items():
        src = (ROOT / 'avsl_nbdev' / f'{mod}.py').read_text()
        deps = set(re.findall(r'(?:from \.|from avsl_nbdev\.|from avsl_nbdev import |import avsl_nbdev\.)(\w+)', src))
        upward += [(mod, d) for d in deps if d in order and d != mod and order[d] > nb]
    assert not upward, upward
