# Developers' single entry point; CI runs `.ci/run`, which installs fresh and runs `make`'s test command.
PY ?= .venv/bin/python

.PHONY: venv seed test test-all bench validate calibrate check clean

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

bench: venv      ## speed benchmark (prints JSON lines)
	$(PY) bench/speed.py --json

clean:
	rm -rf results .venv-ci .pytest_cache .hypothesis
