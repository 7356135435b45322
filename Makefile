# The two commands of the README. Both install into a repo-local .venv/ first (once;
# again only when settings.ini or setup.py change) and are safe to repeat.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test install readme
demo: $(STAMP)
	$(BIN)/avsl_dmt --preset cpu --demo

test: $(STAMP)
	bash tests/run_suite.sh

install: $(STAMP)

# README.md is nbs/index.ipynb rendered (the test suite checks that it is current).
readme: $(STAMP)
	$(BIN)/python tests/render_readme.py

$(STAMP): settings.ini setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# tinysoundfont declares pyaudio, which needs portaudio headers and is not used: install it alone.
	$(BIN)/python -m pip install -q --no-deps tinysoundfont==0.3.7
	touch $(STAMP)
