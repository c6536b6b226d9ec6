# wgpu-cnn: the jobs a fresh machine runs.
#   make train   train seed 001's network on the built-in data set: run/weights.h5, loss.png, metrics.json
#   make test    every test, on the default adapter (lavapipe / Vulkan here)
#   make bench   the benchmark (roofline, every op, GPU vs CPU), table + bench-results/bench.json
# Each installs what a fresh Debian machine lacks (libhdf5-dev, mesa-vulkan-drivers, pkg-config,
# fontconfig and a font for the loss plot).

CARGO ?= cargo
APT_PACKAGES := libhdf5-dev mesa-vulkan-drivers pkg-config libfontconfig1-dev fonts-dejavu-core
BENCH_ARGS ?=
TRAIN_ARGS ?=

.PHONY: train test test-gl bench deps lint fmt doc

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

train: deps
	$(CARGO) run --release --bin wgpu-cnn -- train $(TRAIN_ARGS)

# The tests keep their own tuning cache: choices timed while test threads run in parallel would be
# poor ones for later runs (the autotune's choices persist, see README).
test test-gl: export WGPU_CNN_TUNING_CACHE ?= $(CURDIR)/target/tuning-tests.json

test: deps
	$(CARGO) test --release --all-targets --all-features
	$(CARGO) test --release --doc --all-features
	# The heavy cases (a 544 MiB input; training on the course's photos), ignored by default.
	$(CARGO) test --release --all-features --test gpu_hostile --test model -- --ignored

# The same tests on llvmpipe through OpenGL.
test-gl: deps
	WGPU_BACKEND=gl $(CARGO) test --release --all-targets --all-features

bench: deps
	$(CARGO) run --release --features bench --bin wgpu-cnn -- bench --json bench-results/bench.json $(BENCH_ARGS)

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets --all-features -- -D warnings
	$(CARGO) clippy --release --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --all-features

fmt:
	$(CARGO) fmt --all

doc: deps
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --all-features
