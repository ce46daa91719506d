# Developers' single entry point; CI runs `.ci/run`, which installs fresh and runs `make`'s test command.
PY ?= .venv/bin/python

.PHONY: help venv seed test test-all bench validate calibrate check typecheck clean
.DEFAULT_GOAL := help

help:            ## list the targets
	@grep -E '^[a-z-]+: .*## ' Makefile | sed -E 's/^([a-z-]+):[^#]*## (.*)/  make \1\t\2/' | expand -t 20

# The compiled core (mypyc, see setup.py) is rebuilt when one of its sources changes.
CORE_SOURCES := $(shell python3 -c "import runpy; print(' '.join(m.replace('.', '/') + '.py' for m in runpy.run_path('sim/_core.py')['COMPILED']))")

venv: .venv/.installed

.venv/.installed: pyproject.toml setup.py sim/_core.py $(CORE_SOURCES)
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

seed: venv       ## the seed benchmark: table + plots in results/seed
	.venv/bin/servesim run scenarios/seed_benchmark.yaml --out results/seed

test: venv       ## the default test run (under ~10 minutes on 2 cores)
	$(PY) -m pytest -q

test-all: venv   ## including slow tests
	$(PY) -m pytest -q -m ""

check: venv      ## validate every shipped scenario without running it
	.venv/bin/servesim check scenarios

validate: venv   ## predicted vs measured on the validation cases
	.venv/bin/servesim validate --out results/validation

calibrate: venv  ## refit cost profiles from calibration/data
	$(PY) -m calibration fit

typecheck: venv  ## mypy over the compiled core, as the mypyc build checks it
	$(PY) -m pip install --quiet mypy types-PyYAML
	$(PY) -m mypy --ignore-missing-imports --follow-imports=silent $(CORE_SOURCES)

bench: venv      ## speed benchmark (prints JSON lines)
	$(PY) bench/speed.py --json

clean:
	rm -rf results .venv-ci .pytest_cache .hypothesis
