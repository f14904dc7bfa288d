# mmgeo: the two commands of the README, and their pieces.
#   make demo   venv + install + demo world + ingest into embedded Qdrant + mmgeo-search on a demo photo
#   make test   lint (ruff, import contracts) + the whole test suite (what CI runs)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned to the CPU-capable release this project is tested with; override for your CUDA build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.mmgeo-installed
DEMO   ?= demo

.PHONY: install demo lint test bench-quick clean-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Stage 1 of the demo is retrieval over the world's geotagged ground photos (--stage1 knn, README "The demo
# world"). --top-n 10: the text rerank looks at the image top 4 x top-n, and the demo photo's landmark ranks
# below 20th by image alone among the 46 tiles around New York; the rerank's text signal puts it first.
demo: $(STAMP) $(DEMO)/.ingested $(DEMO)/text-projection.safetensors
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-search $(DEMO)/world/demo-photo.jpg --store $(DEMO)/store --stage1 knn --top-n 10 \
	  --text-encoder $(DEMO)/text-projection.safetensors --html $(DEMO)/map.html --geojson $(DEMO)/result.geojson
	@echo "map: $(DEMO)/map.html   GeoJSON: $(DEMO)/result.geojson"

$(DEMO)/world/demo-photo.jpg: | $(STAMP)
	$(BIN)/mmgeo demo-world $(DEMO)/world

$(DEMO)/.ingested: $(DEMO)/world/demo-photo.jpg
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-ingest $(DEMO)/world --splits train,query,index --modalities satellite --encoder efficientnet_lite0 --store $(DEMO)/store
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-ingest $(DEMO)/world --splits train,index --modalities ground --encoder efficientnet_lite0 --store $(DEMO)/store
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-ingest $(DEMO)/world --splits train,query --modalities text --encoder minilm-l6 --store $(DEMO)/store
	touch $@

$(DEMO)/text-projection.safetensors: $(DEMO)/world/demo-photo.jpg
	HF_HUB_OFFLINE=1 $(BIN)/mmgeo-train text-projection $(DEMO)/world --out $@

# ruff's rule set and the import-linter layer contracts are in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports

test: lint
	@HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; exit $$rc

bench-quick: $(STAMP)
	$(BIN)/mmgeo-bench --quick

clean-demo:
	rm -rf $(DEMO)
