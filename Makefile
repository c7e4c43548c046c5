# The two commands of the README:
#   make demo   - local control plane + CRD + controller, change a ConfigMap, print the Job it triggered
#   make test   - lint, type-check and the whole test suite against a real kube-apiserver, the integration
#                 tests twice: on the newest and on the oldest supported Kubernetes (docs/compatibility.md)
# Both install what they need themselves (Python venv from pyproject.toml; the control planes are built by
# hack/build-k8s.sh (newest, Go modules) and hack/build-envtest.sh (oldest, Debian source), cached in
# ~/.cache/jobtrigger/envtest/<version>/, so a second run builds nothing).

PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed

# The supported range. jobtrigger/envtest/ runs $JOBTRIGGER_K8S_VERSION (default: the newest).
K8S_NEWEST = 1.37.2
K8S_OLDEST = 1.20.2
ON_NEWEST  = JOBTRIGGER_K8S_VERSION=$(K8S_NEWEST)
ON_OLDEST  = JOBTRIGGER_K8S_VERSION=$(K8S_OLDEST)

.PHONY: demo test lint unit integration integration-oldest envtest envtest-newest envtest-oldest venv crd image \
	docs bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# control planes: kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok (cached; see docs/testing.md)
envtest: envtest-newest envtest-oldest

envtest-newest:
	$(ON_NEWEST) bash hack/build-k8s.sh

envtest-oldest:
	$(ON_OLDEST) bash hack/build-envtest.sh

demo: venv envtest-newest
	$(ON_NEWEST) $(BIN)/jobtrigger demo

lint: venv
	$(BIN)/ruff check jobtrigger tests benchmarks
	$(BIN)/ruff format --check jobtrigger tests benchmarks
	$(BIN)/mypy --strict jobtrigger

unit: venv
	$(BIN)/pytest tests/unit -q

integration: venv envtest-newest
	$(ON_NEWEST) $(BIN)/pytest tests/integration -q

integration-oldest: venv envtest-oldest
	$(ON_OLDEST) $(BIN)/pytest tests/integration -q

# unit + integration tests on the newest version, the integration tests again on the oldest
test: venv envtest lint docs
	$(ON_NEWEST) $(BIN)/pytest -q -ra --durations=10
	$(ON_OLDEST) $(BIN)/pytest tests/integration -q -ra --durations=5
	$(ON_NEWEST) $(BIN)/python -m benchmarks --quick
	bash hack/build-image.sh

# all benchmarks on a quiet machine (~40 min); results go to docs/benchmarks.md
bench: venv envtest-newest
	$(ON_NEWEST) $(BIN)/python -m benchmarks

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
