# The two commands of the README: `make demo` (set up, then run the RECAP demo) and `make test`.
.PHONY: setup demo test lint

setup:
	bash scripts/setup.sh

demo: setup
	MUJOCO_GL=egl .venv/bin/pi-star-recap demo --output outputs/demo --overwrite

test: setup
	MUJOCO_GL=egl .venv/bin/python -m pytest -q -n 2 --dist loadgroup

lint: setup
	.venv/bin/ruff check src tests benchmarks scripts
	.venv/bin/ruff format --check src tests benchmarks scripts
