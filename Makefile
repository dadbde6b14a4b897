# Everything runs from a fresh clone with nothing but python3: the first target that needs
# the environment creates .venv and installs the project (editable) into it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SOURCE ?= data/sample
STORE  ?= data/celebamask-hq.zarr
JOBS   ?=
CONFIG ?= default
SAMPLE_COUNT ?= 200

JOBS_FLAG := $(if $(JOBS),--jobs $(JOBS),)

N      ?= 1000

.PHONY: build-store test venv clean-store clean bench bench-quick

# The tests use torch and torchvision (the v2 transforms tests), pinned as a matching pair to the
# builds that lie on these machines' disk for Python 3.11 (an unpinned torch would download a
# multi-GB CUDA build). torch 2.13.0's CPU wheel has no torchvision beside it: PyPI's 0.28.0 is
# built against CUDA torch and fails to import ('operator torchvision::nms does not exist'). So the
# tests take torch 2.14.1 + torchvision 0.29.1, a CUDA build that runs on the CPU (about 5.5 GB in
# the venv; a fresh `make venv` took 2 min 44 s here, 6.9 GB in all). Elsewhere pick any matching
# pair, e.g. make test TEST_TORCH="torch==2.13.0" (torchvision left out: its tests are skipped; in a
# venv that has torchvision already, pip uninstall it, since it will not import beside another torch).
# A changed TEST_TORCH re-runs the install (the venv records the one it got in .venv/.test-torch).
TEST_TORCH ?= torch==2.14.1 torchvision==0.29.1

# What `make test` installed must run, never be skipped (tests/optional.py): the hf extra's datasets
# and every package TEST_TORCH names (its requirement without the version).
TEST_REQUIRE := datasets $(foreach req,$(TEST_TORCH),$(firstword $(subst =, ,$(subst <, ,$(subst >, ,$(subst ~, ,$(subst !, ,$(req))))))))

# Two install levels in the one venv, each a stamp: building needs only the base package (zarr,
# numpy, Pillow, ...); the tests add every extra, torch and torchvision (about 7 GB). `make
# build-store` never pulls the test stack; `make test` adds it to the same venv.
BASE_STAMP := $(VENV)/.installed-base
TEST_STAMP := $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(BASE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

TORCH_RECORD := $(VENV)/.test-torch
ifneq ($(strip $(file < $(TORCH_RECORD))),$(strip $(TEST_TORCH)))
.PHONY: $(TEST_STAMP)
endif

$(TEST_STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]' $(foreach req,$(TEST_TORCH),'$(req)')
	@printf '%s' '$(TEST_TORCH)' > $(TORCH_RECORD)
	@touch $@ $(BASE_STAMP)

venv: $(TEST_STAMP)

# The synthetic sample is made only when building the default source and it is absent. Its
# README.txt is written last, so a synth that was interrupted is made again, not half used.
data/sample/README.txt: | $(BASE_STAMP)
	rm -rf data/sample
	$(BIN)/celebamask synth data/sample --count $(SAMPLE_COUNT) --seed 0

# --resume, never --overwrite: a new STORE is built, an unfinished one continued, a complete one
# built with the same options left as it is ("up to date"), and one built differently (or any
# folder that is not such a store) refused untouched. `make clean-store` removes it on purpose.
build-store: $(BASE_STAMP) $(if $(filter data/sample,$(SOURCE)),data/sample/README.txt,)
	$(if $(findstring ://,$(STORE)),,@mkdir -p $(dir $(STORE)))
	$(BIN)/celebamask build $(SOURCE) $(STORE) --config $(CONFIG) $(JOBS_FLAG) --resume

test: $(TEST_STAMP)
	CELEBAMASK_TEST_REQUIRE='$(strip $(TEST_REQUIRE))' $(BIN)/python -m pytest -q

# Build vs common practice vs decode floor, sizes, read speeds, scoring vs Quantus (minutes at N=1000;
# the synthetic source is generated once into bench/work/ and reused); then the cost of the masks
# array and label_maps' render speed (bench/masks.py). Never part of `make test`.
bench: $(TEST_STAMP)
	$(BIN)/python -m bench --count $(N) $(JOBS_FLAG)
	$(BIN)/python -m bench.masks --count $(N) $(JOBS_FLAG)

bench-quick: $(TEST_STAMP)
	$(BIN)/python -m bench --count 200 --reads 100 $(JOBS_FLAG)
	$(BIN)/python -m bench.masks --count 200 $(JOBS_FLAG)

clean-store:
	rm -rf $(STORE)

clean:
	rm -rf $(VENV) data/sample $(STORE)
