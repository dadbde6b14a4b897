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

# The tests use torch; pinned to the CPU wheel that lies on these machines' disk (an unpinned
# torch would download a multi-GB CUDA build).
TEST_TORCH ?= torch==2.13.0

$(BIN)/celebamask: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' '$(TEST_TORCH)'
	@touch $@

venv: $(BIN)/celebamask

# The synthetic sample is made only when building the default source and it is absent. Its
# README.txt is written last, so a synth that was interrupted is made again, not half used.
data/sample/README.txt: | $(BIN)/celebamask
	rm -rf data/sample
	$(BIN)/celebamask synth data/sample --count $(SAMPLE_COUNT) --seed 0

build-store: $(BIN)/celebamask $(if $(filter data/sample,$(SOURCE)),data/sample/README.txt,)
	$(BIN)/celebamask build $(SOURCE) $(STORE) --config $(CONFIG) $(JOBS_FLAG) --overwrite

test: $(BIN)/celebamask
	$(BIN)/python -m pytest -q

# Build vs common practice vs decode floor, sizes and read speeds (a few minutes at N=1000;
# the synthetic source is generated once into bench/work/ and reused). Never part of `make test`.
bench: $(BIN)/celebamask
	$(BIN)/python -m bench --count $(N) $(JOBS_FLAG)

bench-quick: $(BIN)/celebamask
	$(BIN)/python -m bench --count 200 --reads 100 $(JOBS_FLAG)

clean-store:
	rm -rf $(STORE)

clean:
	rm -rf $(VENV) data/sample $(STORE)
