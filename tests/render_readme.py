"""README.md is rendered from nbs/index.ipynb: `python tests/render_readme.py` writes it, `--check` says whether it is current.

nbdev_readme needs Quarto, which cannot be installed offline; nbconvert's Markdown exporter does the same for a
notebook of Markdown cells. Links are rewritten from the notebook's folder (nbs/) to the repository root."""
import re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = '<!-- Rendered from nbs/index.ipynb by `python tests/render_readme.py`; edit the notebook, not this file. -->\n\n'

def render(nb_path: Path = ROOT / 'nbs' / 'index.ipynb') -> str:
    "The README's text: the notebook as Markdown, with links relative to the repository root."
    from nbconvert import MarkdownExporter
    body, _ = MarkdownExporter().from_filename(str(nb_path))
    body = body.replace('](../', '](')                                          # ../figures/x.png -> figures/x.png
    body = re.sub(r'\]\((?![a-z]+:|#|/)([^)\s]+\.ipynb)\)', r'](nbs/\1)', body)  # 09_dmt.ipynb -> nbs/09_dmt.ipynb
    return HEADER + re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'

if __name__ == '__main__':
    text, readme = render(), ROOT / 'README.md'
    if '--check' in sys.argv:
        ok = readme.exists() and readme.read_text() == text
        print('README.md matches nbs/index.ipynb' if ok else 'README.md differs from nbs/index.ipynb: run python tests/render_readme.py')
        sys.exit(0 if ok else 1)
    readme.write_text(text)
    print(f'wrote {readme} ({len(text.encode()):,} bytes)')
