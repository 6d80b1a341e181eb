# The two commands a newcomer needs (README): `make demo` runs the main job, `make test` runs every test.
# Both first run scripts/setup.sh, which installs libtorch (the torch==2.13.0 wheel) and the pinned test oracles
# into $(SUITE_CACHE) outside the clone, writes .cargo/config.toml, and fetches the hash-checked offline assets.
SUITE_CACHE ?= $(HOME)/.cache/suite
export SUITE_CACHE
SUITE := ./target/release/suite

.PHONY: setup build demo test lint bench
setup:
	./scripts/setup.sh

build: setup
	cargo build --release --bin suite

# Main job: transfer learning of the ImageNet-pretrained EfficientNet-Lite0 on MNIST-5k (real data, held-out split).
demo: build
	$(SUITE) data mnist5k --out $(SUITE_CACHE)/data/mnist5k
	$(SUITE) finetune vision --config tasks/mnist5k_lite0.toml --data $(SUITE_CACHE)/data/mnist5k --out runs/demo-$$(date +%Y%m%d-%H%M%S)

# The page test of `suite serve` drives Debian's chromium (scripts/setup_browser.sh installs it when missing).
test: setup
	./scripts/setup_browser.sh
	cargo test --release --workspace

lint: setup
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings

bench: build
	$(SUITE) bench resnet50-step
	$(SUITE) bench head-only
	$(SUITE) bench serve
