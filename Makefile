# mmgeo: the two commands of the README, and their pieces.
#   make demo   venv + install + demo world + stage-2 training + ingest into embedded Qdrant + mmgeo-search on a demo photo
#   make test   lint (ruff, import contracts) + the whole test suite (what CI runs)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned to the CPU-capable release this project is tested with; override for your CUDA build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.mmgeo-installed
DEMO   ?= demo
WORLD_OPTS ?=

.PHONY: install demo demo-eval lint test bench-quick clean-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Training outputs are never replaced without --force (README "Training"); here make decides when they are stale.
# The demo's image encoder is Sample4Geo trained on the world's training landmarks (README "The demo world"):
# EfficientNet-Lite0 (pip weights) frozen at 128 px, a 128-d projection trained on ground<->satellite pairs;
# no validation split, so nothing about the query landmarks reaches the model. The store records the encoder, its
# weights and the text projection, so the search needs no model flags; stage 1 is retrieval over the world's
# geotagged ground photos with the same encoder (what --stage1 auto picks without GeoCLIP's weights).
STAGE2 = $(DEMO)/stage2/last.pt
STAGE2_TRAIN = --backbone tf_efficientnet_lite0 --pretrained efficientnet_lite0 --freeze-backbone --embed-dim 128 \
	--img-size 128 --epochs 15 --batch-size 16 --n-ground 4 --lr 3e-3 --val-split none
demo: $(STAMP) $(DEMO)/.ingested $(DEMO)/text-projection.safetensors $(DEMO)/.calibrated
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-search $(DEMO)/world/demo-photo.jpg --store $(DEMO)/store --html $(DEMO)/map.html --geojson $(DEMO)/result.geojson
	@echo "map: $(DEMO)/map.html   GeoJSON: $(DEMO)/result.geojson"

$(DEMO)/world/demo-photo.jpg: | $(STAMP)
	$(BIN)/mmgeo demo-world $(DEMO)/world $(WORLD_OPTS)

$(STAGE2): $(DEMO)/world/demo-photo.jpg
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-train sample4geo $(DEMO)/world --out $(DEMO)/stage2 $(STAGE2_TRAIN) --force

$(DEMO)/.ingested: $(STAGE2)
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-ingest $(DEMO)/world --splits train,query,index --modalities satellite --encoder sample4geo --weights $(STAGE2) --store $(DEMO)/store
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-ingest $(DEMO)/world --splits train,index --modalities ground --encoder sample4geo --weights $(STAGE2) --store $(DEMO)/store
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-ingest $(DEMO)/world --splits train,query --modalities text --encoder minilm-l6 --store $(DEMO)/store
	touch $@

# fitted on the encoders the store records, and recorded in its text collection (so it needs the collections)
$(DEMO)/text-projection.safetensors: $(DEMO)/.ingested
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-train text-projection $(DEMO)/world --store $(DEMO)/store --out $@ --force

# The confidence (README "How sure is an answer?"): fitted on the world's calibration photos, other views of the
# query landmarks than the query split's, so mmgeo-eval never scores a photo it was fitted on.
$(DEMO)/.calibrated: $(DEMO)/.ingested $(DEMO)/text-projection.safetensors
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-train calibration $(DEMO)/world/calibration/photos.csv --store $(DEMO)/store --stage1 knn
	touch $@

# The committed evaluation (benchmarks/results/demo-eval.*): the same steps on a larger draw of the same world,
#   make demo-eval DEMO=demo-eval WORLD_OPTS="--synthetic-landmarks 150"
demo-eval: $(STAMP) $(DEMO)/.ingested $(DEMO)/text-projection.safetensors $(DEMO)/.calibrated
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-eval $(DEMO)/world --store $(DEMO)/store --stage1 knn --radii 25,100,500,inf --out $(DEMO)/eval
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-train geoclip $(DEMO)/world --out $(DEMO)/geoclip-head.pt --force --json > $(DEMO)/geoclip.json
	PYTHONPATH=src $(BIN)/python benchmarks/demo_eval_report.py $(DEMO)/eval/results.json --geoclip $(DEMO)/geoclip.json \
	  --reliability $(DEMO)/eval/reliability.json

# ruff's rule set and the import-linter layer contracts are in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports

# Two pytest-xdist workers (CI has 2 cores); tests/conftest.py builds make demo once for both, keeps each test
# module in one worker but spreads the docs examples (run last, in collection order: make demo is built early while
# the other worker goes on). PYTEST_WORKERS=0 runs the suite in this process.
PYTEST_WORKERS ?= 2
test: lint
	@HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; exit $$rc

bench-quick: $(STAMP)
	$(BIN)/mmgeo-bench --quick

clean-demo:
	rm -rf $(DEMO)
