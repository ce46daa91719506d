# Developers' single entry point; CI runs `.ci/run`, which installs fresh and runs `make`'s test command.
PY ?= .venv/bin/python

.PHONY: venv seed test test-all bench validate calibrate check clean

venv:
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet -e '.[test]'

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
