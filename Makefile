# soundsup - the two commands a new user needs are `make demo` and `make test`.
# Both set themselves up: a .venv in the repository root (idempotent), and, for the tests,
# the Debian packages they drive for real (graphviz, chromium, SLURM + munge).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.soundsup-installed
CORES ?= 2
SNAKEMAKE := $(BIN)/snakemake
# The config of `make dag` and `make report` (`make report CONFIG=config.yaml`).
CONFIG ?= configs/demo.yaml

.PHONY: venv demo test system-deps dag report bench lint clean-demo paper-dry-run

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# --rerun-incomplete: after a Ctrl-C or a kill, `make demo` again redoes the jobs that did not
# finish (training resumes from its checkpoint) instead of stopping at their partial outputs.
demo: venv
	$(SNAKEMAKE) --cores $(CORES) --configfile configs/demo.yaml --scheduler greedy --rerun-incomplete
	@echo "demo finished: results/table1.csv results/table2.csv results/figures/"

system-deps:
	bash .ci/system-deps

test: venv system-deps
	$(BIN)/python -m pytest -ra --durations=15 $(PYTEST_ARGS)

paper-dry-run: venv
	$(SNAKEMAKE) -n --cores 16 results/table2.csv

# Each graph is drawn into a temporary file and moves into place only when Graphviz succeeded
# and the drawing differs, so a missing `dot` never truncates the tracked docs/rulegraph.svg.
dag: venv
	@command -v dot >/dev/null || { echo "make dag needs Graphviz's dot (apt-get install graphviz)" >&2; exit 1; }
	@mkdir -p docs
	@set -o pipefail; for graph in rulegraph dag; do \
	  $(SNAKEMAKE) --configfile $(CONFIG) --$$graph | dot -Tsvg > docs/.$$graph.svg.tmp \
	    || { rm -f docs/.$$graph.svg.tmp; exit 1; }; \
	  if cmp -s docs/.$$graph.svg.tmp docs/$$graph.svg; then rm docs/.$$graph.svg.tmp; echo "docs/$$graph.svg unchanged"; \
	  else mv docs/.$$graph.svg.tmp docs/$$graph.svg; echo "wrote docs/$$graph.svg"; fi; \
	done

report: venv
	$(SNAKEMAKE) --configfile $(CONFIG) --report results/report.html
	@echo "wrote results/report.html"

bench: venv
	for bench in benchmarks/bench_*.py; do $(BIN)/python $$bench || exit 1; done

lint: venv
	$(SNAKEMAKE) --lint --configfile configs/demo.yaml
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/ruff check soundsup workflow_scripts tests benchmarks

clean-demo:
	rm -rf results resources logs .snakemake
