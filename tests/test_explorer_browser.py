"""Real-browser end-to-end test of the pseudo-label explorer: JupyterLab on 127.0.0.1, Debian's headless Chromium driven
through Selenium and the system chromedriver (nothing downloaded). Opens nbs/11_explorer.ipynb (a copy), runs all cells,
checks that the widgets rendered, moves the τ slider with the keyboard and checks that the displayed numbers change,
saves a screenshot ($AVSL_SCREENSHOT, default: the test's temporary folder).

Needs `apt install chromium chromium-driver` and the dev extras (selenium). Without them the test is skipped, except when
AVSL_BROWSER_TEST=1 (as `.ci/run` sets), where it fails. AVSL_BROWSER_PRESET picks the notebook's preset (default tiny)."""
import json, os, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get('CHROMIUM') or shutil.which('chromium') or shutil.which('chromium-browser')
CHROMEDRIVER = os.environ.get('CHROMEDRIVER') or shutil.which('chromedriver')


def _require():
    missing = [n for n, p in (('chromium', CHROMIUM), ('chromedriver', CHROMEDRIVER)) if not p]
    try: import selenium  # noqa: F401
    except ImportError: missing.append('selenium (pip install -e ".[dev]")')
    if missing:
        msg = f"browser test needs {', '.join(missing)} (apt install chromium chromium-driver)"
        if os.environ.get('AVSL_BROWSER_TEST') == '1': pytest.fail(msg)
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on 127.0.0.1 serving a copy of the explorer notebook, with its own config and settings."
    _require()
    work, cfg = tmp_path / 'lab', tmp_path / 'jupyter'
    work.mkdir()
    shutil.copy(ROOT / 'nbs' / '11_explorer.ipynb', work)
    settings = cfg / 'lab' / 'user-settings' / '@jupyterlab' / 'notebook-extension'
    settings.mkdir(parents=True)
    (settings / 'tracker.jupyterlab-settings').write_text(json.dumps({'windowingMode': 'none'}))   # every cell in the DOM
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(cfg), 'JUPYTER_RUNTIME_DIR': str(tmp_path / 'runtime'),
           'AVSL_PRESET': os.environ.get('AVSL_BROWSER_PRESET', 'tiny'), 'MPLBACKEND': 'Agg'}
    env.pop('IN_TEST', None)
    log = open(tmp_path / 'jupyterlab.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1',
                             f'--ServerApp.port={port}', '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}',
                             f'--ServerApp.root_dir={work}', '--LabApp.news_url=',
                             '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate', '--LabApp.extension_manager=readonly',
                             *(['--allow-root'] if hasattr(os, 'geteuid') and os.geteuid() == 0 else [])],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    url = f'http://127.0.0.1:{port}'
    for _ in range(120):
        try:
            urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=2); break
        except Exception:
            if proc.poll() is not None: pytest.fail(f"jupyterlab exited: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    else: pytest.fail('jupyterlab did not answer within 60 s')
    yield {'url': url, 'token': token, 'log': tmp_path / 'jupyterlab.log'}
    proc.terminate()
    try: proc.wait(30)
    except subprocess.TimeoutExpired: proc.kill()
    log.close()


@pytest.fixture
def browser(tmp_path):
    _require()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync', '--window-size=1400,1300',
              f'--user-data-dir={tmp_path / "chromium"}'):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def _wait(driver, cond, timeout, what, lab=None):
    t0 = time.time()
    while time.time() - t0 < timeout:
        errors = [e.text for e in driver.find_elements('css selector', '[data-mime-type="application/vnd.jupyter.stderr"]')
                  if 'Traceback' in e.text or 'Error' in e.text.split('\n')[-1]]
        if errors: pytest.fail(f"a notebook cell failed while waiting for {what}:\n{errors[0][-3000:]}")
        r = cond()
        if r: return r
        time.sleep(0.5)
    tail = lab['log'].read_text()[-2000:] if lab else ''
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{tail}")


def test_explorer_in_jupyterlab(lab, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    t0 = time.time()
    d = browser
    d.get(f"{lab['url']}/lab/tree/11_explorer.ipynb?token={lab['token']}")
    _wait(d, lambda: d.find_elements(By.CSS_SELECTOR, '.jp-NotebookPanel .jp-Cell'), 120, 'the notebook to open', lab)
    _wait(d, lambda: any(e.text.strip().lower().startswith(('idle', 'python 3 (ipykernel) | idle'))
                         for e in d.find_elements(By.CSS_SELECTOR, '.jp-Notebook-ExecutionIndicator, .jp-StatusBar-TextItem'))
          or d.find_elements(By.CSS_SELECTOR, '.jp-Notebook-ExecutionIndicator[data-status="idle"]'), 120, 'the kernel', lab)
    run_menu = [e for e in d.find_elements(By.CSS_SELECTOR, '.lm-MenuBar-item') if e.text.strip() == 'Run']
    assert run_menu, 'no Run menu in the JupyterLab menu bar'
    run_menu[0].click()
    item = _wait(d, lambda: [e for e in d.find_elements(By.CSS_SELECTOR, '.lm-Menu-item') if e.text.strip().startswith('Run All Cells')],
                 30, 'the Run All Cells menu item', lab)
    item[0].click()
    opened = time.time() - t0

    _wait(d, lambda: [e for e in d.find_elements(By.CSS_SELECTOR, '.explorer-stats') if '<table' in e.get_attribute('innerHTML')],
                  900, 'the explorer widgets to render', lab)[0]
    _wait(d, lambda: 'the networks did not run' in d.find_element(By.CSS_SELECTOR, '.jp-Notebook').text, 300,
          'the last cell (headless checks) to finish', lab)
    ran = time.time() - t0
    frame = d.find_element(By.CSS_SELECTOR, '.explorer-frame')
    assert frame.tag_name == 'img' and frame.get_attribute('src').startswith('blob:') and frame.size['width'] > 100
    assert d.find_elements(By.CSS_SELECTOR, '.jp-OutputArea audio'), 'no audio player rendered'
    _wait(d, lambda: 'τ=0.50' in d.find_element(By.CSS_SELECTOR, '.explorer-stats').text, 60,
          'the table to show the last cell\'s τ = 0.50', lab)                  # the last cell moved τ to 0.8 and back
    text0 = d.find_element(By.CSS_SELECTOR, '.explorer-stats').text
    assert 'two teachers' in text0 and 'teacher A alone' in text0, text0

    handle = d.find_element(By.CSS_SELECTOR, '.explorer-tau .noUi-handle')
    d.execute_script('arguments[0].scrollIntoView({block: "center"})', handle)
    handle.click()
    for _ in range(4): handle.send_keys(Keys.ARROW_RIGHT)                   # 4 steps of 0.05: τ 0.50 -> 0.70
    _wait(d, lambda: 'τ=0.70' in d.find_element(By.CSS_SELECTOR, '.explorer-stats').text, 60, 'the table to follow the slider', lab)
    text1 = d.find_element(By.CSS_SELECTOR, '.explorer-stats').text
    assert text1 != text0
    readout = d.find_element(By.CSS_SELECTOR, '.explorer-tau .widget-readout').text
    assert readout.strip() == '0.70', readout

    nxt = [b for b in d.find_elements(By.CSS_SELECTOR, '.jp-OutputArea button') if b.text.strip() == '▶']
    src0 = d.find_element(By.CSS_SELECTOR, '.explorer-frame').get_attribute('src')
    nxt[0].click()
    _wait(d, lambda: d.find_element(By.CSS_SELECTOR, '.explorer-frame').get_attribute('src') != src0, 60, 'the next frame', lab)

    shot = Path(os.environ.get('AVSL_SCREENSHOT', tmp_path / 'explorer.png'))
    shot.parent.mkdir(parents=True, exist_ok=True)
    ui = d.find_element(By.CSS_SELECTOR, '.jp-OutputArea-output .widget-vbox')
    d.execute_script('arguments[0].scrollIntoView({block: "start"})', ui)
    ui.screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"\nexplorer browser test: notebook open and run started {opened:.0f} s, widgets and checks {ran:.0f} s, "
          f"slider + screenshot {time.time() - t0:.0f} s in all; screenshot {shot}")
