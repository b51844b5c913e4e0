# pi-agent tasks. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Guests shipped in guests/dist/ (the default pipeline's stages).
guests := "persona telegram-html"
# One target dir for guests, shared with the test build, so nothing is built twice.
guest_target := "target/guests"

# List the recipes
default:
    @just --list

# Build the guests for wasm32-wasip2 and atomically replace guests/dist/<name>.wasm
build-guests:
    #!/usr/bin/env bash
    set -euo pipefail
    packages=(); for g in {{guests}}; do packages+=(-p "$g"); done
    cargo build --profile guest --target wasm32-wasip2 --target-dir {{guest_target}} "${packages[@]}"
    mkdir -p guests/dist
    for g in {{guests}}; do
        built="{{guest_target}}/wasm32-wasip2/guest/${g//-/_}.wasm"
        # Write next to the destination, then rename: a watcher never sees half a file.
        cp "$built" "guests/dist/.$g.wasm.tmp"
        mv -f "guests/dist/.$g.wasm.tmp" "guests/dist/$g.wasm"
        echo "guests/dist/$g.wasm  $(wc -c < "guests/dist/$g.wasm") bytes"
    done

# Run the bot (for now: the default pipeline on a sample message, no Telegram or Ollama)
run: build-guests
    cargo run -p pi-agent -- pipeline check
    cargo run -p pi-agent -- pipeline run --message "hi" --reply "**bold** <script>"

# Run pi-agent with any arguments, e.g. `just pi-agent pipeline test`
pi-agent *args:
    cargo run -p pi-agent -- {{args}}

# Run every test: unit, integration (hostile guests, limits, CLI) and the guest fixtures
test:
    cargo test
    just build-guests
    cargo run -p pi-agent -- pipeline test

# Type-check everything and check formatting
check:
    cargo check --workspace --all-targets
    cargo fmt --all --check

# Format the code
fmt:
    cargo fmt --all

# Clippy with warnings as errors, natively and for the guests' wasm target
lint:
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy --target wasm32-wasip2 --target-dir {{guest_target}} -p persona -p telegram-html -p hostile -- -D warnings

# Benchmarks: per-message pipeline cost vs native Rust, and cached vs cold load
bench:
    cargo bench -p pi-agent-tests --bench pipeline

# What CI runs
ci: check lint test
