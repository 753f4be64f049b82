# The two quick-start commands are `make serve` and `make test`; each sets itself up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
REPO   := model_repository
export OMP_WAIT_POLICY ?= PASSIVE

IMAGE  ?= localhost/deepfake-service:0.1.0
# Coverage floors (per cent of the service's, contract's, export's, evaluation's and client's lines),
# just under what the suites reached when they were set (docs/testing.md).
COVERAGE_ALL  ?= 90
COVERAGE_FAST ?= 60

.PHONY: image image-test setup model serve test test-fast lint checkov registry triton bench-model bench-e2e bench-precisions bench-plans bench-mixed-bf16 bench-auto bench-gpu bench-triton bench-front bench-fidelity bench-history bench-load bench-queues bench-jobs kubectl chromium postgres redis clean
LINTED := export preprocess_service model_contract evaluation deepfake_client testing tests benchmarks deploy

setup: $(STAMP)

# torch 2.14.1 / torchvision 0.29.1 are the releases on this machine's disk (pyproject pins them).
# The serving packages at exactly the image's versions: the image's lock (deploy/docker/lock.sh),
# its hashes dropped, as constraints (the rest, torch and the tools, resolve around them).
SERVE_LOCK := deploy/docker/requirements-serve.lock
$(STAMP): pyproject.toml $(SERVE_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	sed -e '/--hash=/d' -e 's/ \\$$//' $(SERVE_LOCK) > $(VENV)/serve-constraints.txt
	$(BIN)/pip install --quiet -c $(VENV)/serve-constraints.txt -e ".[export,serve,openvino,eval,client,dev]"
	$(BIN)/python -m preprocess_service.face_model
	touch $(STAMP)

# An untrained demo model, only if no model has been exported yet.
model: setup
	@test -f $(REPO)/deepfake_backbone/1/model.onnx || $(BIN)/deepfake-export --demo --repository $(REPO)

# make serve PORT=8081 HOST=0.0.0.0: another port, or every interface (mind SECURITY.md first).
HOST ?= 127.0.0.1
PORT ?= 8080
serve: model
	$(BIN)/deepfake-serve --host $(HOST) --port $(PORT) --model-repository $(REPO)

# Everything: lint and types, the unit layer, and the integration tests (real HTTP, a real Triton,
# PostgreSQL, Redis and Chromium, real videos). What CI runs; fails below COVERAGE_ALL per cent.
test: lint kubectl checkov registry chromium postgres redis
	$(BIN)/python -m pytest --cov --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_ALL)

# The fast layer: lint, types and tests/unit (the fake backend, no model export, no Debian
# packages): a one-line change checked in a couple of minutes. Fails below COVERAGE_FAST per cent.
test-fast: lint
	$(BIN)/python -m pytest tests/unit -q --cov --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FAST)

# Lint, format check and types: a finding fails `make test`, and so CI.
lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

# The service image, built with buildah (base bootstrapped from Debian's packages when no registry
# answers), then run as built and with a read-only root as user 10001 (README, "Container images").
image:
	bash deploy/docker/build_image.sh $(IMAGE)

image-test: image model
	$(BIN)/python deploy/docker/image_test.py --image $(IMAGE) --repository $(REPO)

# The evaluation report is opened in headless Chromium (Debian's; Playwright drives it, never downloads one).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

# The deployment tests render the kustomize overlays with kubectl (Debian: kubernetes-client).
kubectl:
	@command -v kubectl >/dev/null || { apt-get update -qq && apt-get install -y -qq kubernetes-client; }

# checkov scans every rendered manifest and the Dockerfile in the deployment tests (tests/test_deploy.py).
# Pinned, from PyPI, in a venv of its own: its dependency pins would fight the service's.
CHECKOV_VERSION := 3.3.30
checkov: $(VENV)/checkov/bin/checkov
$(VENV)/checkov/bin/checkov: | setup
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install --quiet checkov==$(CHECKOV_VERSION)

# `python -m deploy.release_images pin` is tested against a real registry (Debian: docker-registry,
# the CNCF distribution server), started by the test on a free loopback port.
registry:
	@command -v docker-registry >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry; }

# The history and rate-limit tests start their own PostgreSQL and Redis (deploy/local_servers.py: private
# servers on free loopback ports, in temporary directories); only the binaries are needed. Debian's
# system cluster is not created (create_main_cluster = false before the server package installs, as
# the official postgres image does); a system redis the package may start (6379) is never used.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-common && \
		sed -ri 's/^#?[[:space:]]*create_main_cluster.*/create_main_cluster = false/' \
			/etc/postgresql-common/createcluster.conf && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

redis:
	@command -v redis-server >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

# A real tritonserver (2.51, from PyPI wheels, CPU config) on 127.0.0.1:8000/8001/8002, foreground.
triton: model
	$(BIN)/python -m deploy.triton_local.server --repository $(REPO)

bench-model: setup
	$(BIN)/python benchmarks/model_cpu.py

bench-e2e: model
	$(BIN)/python benchmarks/e2e.py --backends embedded triton-http triton-grpc triton-grpc-shm

bench-precisions: setup
	$(BIN)/python benchmarks/e2e.py --precisions fp32 bf16 int8 --concurrency 1 2

# deepfake-export --precision auto's plan tables, sensitive and demo model (docs/export.md)
bench-plans: setup
	$(BIN)/python benchmarks/plans.py

# bf16 with the most sensitive residual blocks kept at fp32 (IR-marked), sensitive model (benchmarks/mixed_bf16.py)
bench-mixed-bf16: setup
	$(BIN)/python benchmarks/mixed_bf16.py

# The original's way, fp32 and the auto plan end to end on the seed videos (docs/benchmarks.md)
bench-auto: setup
	$(BIN)/python benchmarks/e2e.py --precisions fp32 auto --demo-model --concurrency 1 2

# On a host with an NVIDIA GPU (refuses elsewhere); see README "GPU".
bench-gpu:
	bash benchmarks/gpu_bench.sh

bench-triton: model
	bash benchmarks/triton_perf.sh $(REPO)

# Decode and faces per seed video; the Haar fallback against its exact banded search (docs/benchmarks.md)
bench-front: setup
	$(BIN)/python benchmarks/front.py

bench-fidelity: setup
	$(BIN)/python benchmarks/fidelity.py

bench-history: setup postgres
	$(BIN)/python benchmarks/history_store.py

bench-load: model
	$(BIN)/python benchmarks/load.py

# Jobs against /predict/: 200 short videos, 1, 2 and 4 deepfake-workers on Debian's Redis (docs/benchmarks.md, "Jobs").
bench-jobs: model redis
	$(BIN)/python benchmarks/jobs.py

# Task queues compared (docs/jobs.md, "Why Huey"): the candidates are the bench-queues extra, at the
# serve lock's versions of what they share with the service.
bench-queues: setup redis postgres
	$(BIN)/pip install --quiet -c $(VENV)/serve-constraints.txt -e ".[bench-queues]"
	$(BIN)/python benchmarks/queues.py

clean:
	rm -rf $(VENV) .pytest_cache
