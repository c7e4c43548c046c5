# The two commands of the README:
#   make demo   - local control plane + CRD + controller, change a ConfigMap, print the Job it triggered
#   make test   - lint, type-check and the whole test suite against a real kube-apiserver
# Both install what they need themselves (Python venv from pyproject.toml; apt packages and the
# kube-apiserver build via hack/build-envtest.sh, cached in ~/.cache/jobtrigger/).

PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed

.PHONY: demo test lint unit integration envtest venv crd image docs bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

envtest:
	bash hack/build-envtest.sh

demo: venv envtest
	$(BIN)/jobtrigger demo

lint: venv
	$(BIN)/ruff check jobtrigger tests benchmarks
	$(BIN)/ruff format --check jobtrigger tests benchmarks
	$(BIN)/mypy --strict jobtrigger

unit: venv
	$(BIN)/pytest tests/unit -q

integration: venv envtest
	$(BIN)/pytest tests/integration -q

test: venv envtest lint docs
	$(BIN)/pytest -q -ra --durations=10
	$(BIN)/python -m benchmarks --quick
	bash hack/build-image.sh

# all benchmarks on a quiet machine (~40 min); results go to docs/benchmarks.md
bench: venv envtest
	$(BIN)/python -m benchmarks

# the documentation site (mkdocs, strict: a broken link or anchor fails the build)
docs: venv
	$(BIN)/mkdocs build --strict

# the container image, built offline with buildah and smoke-tested (hack/build-image.sh says how)
image: venv
	bash hack/build-image.sh

crd: venv
	$(BIN)/jobtrigger crd > crds/jobtrigger.dev_jobtriggers.yaml
	cp crds/jobtrigger.dev_jobtriggers.yaml charts/jobtrigger/crds/

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
