# pi-agent tasks. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Guests shipped in guests/dist/ (the default pipeline's stages).
guests := "persona telegram-html weather news calendar"
# The guests the tests build (tests/build.rs builds exactly these, in one cargo call): the
# shipped ones and the test guests. Built together, they share one feature set of the SDK
# and its dependencies, so a build of some of them reuses what a build of all left behind.
test_guests := guests + " hostile not-a-stage legacy-shout legacy-kv"
# Guests written in Python (guests/NAME/app.py), built with componentize-py into guests/dist/ too.
py_guests := "py-persona py-redact"
# One target dir for guests, shared with the test build, so nothing is built twice.
guest_target := "target/guests"

# List the recipes
default:
    @just --list

# Build the guests — Rust for wasm32-wasip2, Python with componentize-py — and atomically replace guests/dist/<name>.wasm
build-guests:
    #!/usr/bin/env bash
    set -euo pipefail
    packages=(); for g in {{guests}}; do packages+=(-p "$g"); done
    cargo build --profile guest --target wasm32-wasip2 --target-dir {{guest_target}} "${packages[@]}"
    for g in {{guests}}; do "{{just_executable()}}" _install "$g" "{{guest_target}}/wasm32-wasip2/guest/${g//-/_}.wasm"; done
    guests/sdk-py/py-guest build {{py_guests}} | while read -r built; do
        "{{just_executable()}}" _install "$(basename "$built" .wasm)" "$built"
    done

# Build one guest, Rust (guests/NAME/Cargo.toml) or Python (guests/NAME/app.py), into guests/dist/NAME.wasm
build-guest NAME:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -f "guests/{{NAME}}/app.py" ]; then
        "{{just_executable()}}" _install "{{NAME}}" "$(guests/sdk-py/py-guest build "{{NAME}}")"
    elif [ -f "guests/{{NAME}}/Cargo.toml" ]; then
        # With the shipped guests: the same features as `build-guests`, so neither rebuilds
        # the other's dependencies.
        packages=(-p "{{NAME}}"); for g in {{guests}}; do packages+=(-p "$g"); done
        cargo build --profile guest --target wasm32-wasip2 --target-dir {{guest_target}} "${packages[@]}"
        name="{{NAME}}"
        "{{just_executable()}}" _install "$name" "{{guest_target}}/wasm32-wasip2/guest/${name//-/_}.wasm"
    else
        echo "guests/{{NAME}} is neither a Rust guest (Cargo.toml) nor a Python guest (app.py)" >&2; exit 1
    fi

# Copies a built guest to guests/dist/NAME.wasm: written next to it, then renamed, so a watcher never sees half a file.
_install NAME BUILT:
    @mkdir -p guests/dist
    @cp "{{BUILT}}" "guests/dist/.{{NAME}}.wasm.tmp"
    @mv -f "guests/dist/.{{NAME}}.wasm.tmp" "guests/dist/{{NAME}}.wasm"
    @echo "guests/dist/{{NAME}}.wasm  $(wc -c < "guests/dist/{{NAME}}.wasm") bytes"

# Compile guests ahead of time for ARCH (aarch64: the Pi) into guests/dist/precompiled/, so the Pi never runs Cranelift on them (GUESTS: files; default: the manifest's guests)
precompile ARCH="aarch64" *GUESTS:
    cargo run --release -p pi-agent -- pipeline compile --target {{ARCH}} {{GUESTS}}

# Run the Telegram bot (creates .env from .env.example on first use)
run: _env build-guests
    cargo run --release -p pi-agent -- run

# Chat with the LLM in this terminal, through the same pipeline (no Telegram)
chat: _env build-guests
    cargo run --release -p pi-agent -- chat

# Check .env, the pipeline, Ollama and the Telegram token; prints the fix for each problem
doctor: _env build-guests
    cargo run --release -p pi-agent -- doctor

_env:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -f .env ]; then
        cp .env.example .env
        echo "Created .env from .env.example: put your bot token (TELEGRAM_BOT_TOKEN) and your"
        echo "Telegram user id (TELEGRAM_ALLOWED_USERS, TELEGRAM_ADMIN_USERS) in it, then run this again."
        echo "See README.md, 'Setting up'."
        exit 1
    fi

# Run pi-agent with any arguments, e.g. `just pi-agent pipeline test`
pi-agent *args:
    cargo run -p pi-agent -- {{args}}

# Run every test: unit, integration (hostile guests, limits, CLI, the bot end to end) and
# the shipped guest fixtures (tests/suite/cli.rs runs `pipeline test` on them, with the
# guests built exactly as `just build-guests` builds them). Four tests per core: most of
# them wait on a bot process, a fake server or a timer, not on the CPU.
test:
    RUST_TEST_THREADS="${RUST_TEST_THREADS:-$(( $(nproc) * 4 ))}" cargo test

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
    cargo clippy --target wasm32-wasip2 --target-dir {{guest_target}} -p pi-agent-guest -p persona -p telegram-html -p weather -p hostile -p legacy-shout -p legacy-kv -p news -p calendar -- -D warnings

# Benchmarks: per-message pipeline cost vs native Rust, and cached vs cold load
bench:
    cargo bench -p pi-agent-tests

# The bot's memory over a first day (cold start, restart, 30 messages, hot swap, 50 chats);
# BEFORE=<pi-agent binary> adds a column measured the same way in the same run
memory BEFORE="":
    PI_AGENT_BEFORE="{{BEFORE}}" cargo bench -p pi-agent-tests -- memory

# What 1,000 scheduled tasks across 100 chats cost the idle bot: CPU and RSS, before and after
bench-tasks:
    cargo bench -p pi-agent-tests -- tasks

# What the dashboard costs: idle RSS with it off and on, and ns per recorded metric
bench-dashboard:
    cargo bench -p pi-agent-tests -- dashboard

# First-token latency the host adds on the OpenAI path vs the Ollama path, against the fakes
bench-llm:
    cargo bench -p pi-agent-tests -- llm

# A 40-turn conversation on a simulated Pi (prompt 20 tokens/s, one cache slot): tokens evaluated and time to the first word per turn, old window vs new
bench-pi:
    cargo bench -p pi-agent-tests -- pi

# What a guest in Python costs next to the same guest in Rust: size, compile, load, per message, the bot's RSS
bench-python:
    cargo bench -p pi-agent-tests -- python

# What CI runs
ci: check lint test

# --- Deployment (docs/raspberry-pi.md) ---------------------------------------------------

# Cross-compile a static pi-agent for ARCH (aarch64: the Pi; x86_64) into dist/ARCH/ with the default pipeline and guests
dist arch="aarch64": (_cross-tools arch) build-guests
    #!/usr/bin/env bash
    set -euo pipefail
    triple="{{arch}}-unknown-linux-musl"
    # Zig is the C cross compiler for the bundled SQLite and ring; a target dir of its own
    # keeps these builds from waiting on (or invalidating) the native one.
    CARGO_TARGET_DIR=target/cross cargo zigbuild --release --locked -p pi-agent --target "$triple"
    binary="target/cross/$triple/release/pi-agent"
    if readelf -l "$binary" | grep -q "program interpreter"; then
        echo "$binary is not static: it asks for a dynamic loader" >&2; exit 1
    fi
    # Assemble next to dist/{{arch}}, then swap: never half a dist/.
    out="dist/{{arch}}"; tmp="dist/.{{arch}}.tmp"
    rm -rf "$tmp"; mkdir -p "$tmp/guests/dist" "$tmp/guests/fixtures"
    cp "$binary" "$tmp/pi-agent"
    cp pipeline.toml .env.example "$tmp/"
    for g in {{guests}}; do cp "guests/dist/$g.wasm" "$tmp/guests/dist/"; done
    cp guests/fixtures/*.toml "$tmp/guests/fixtures/"
    rm -rf "$out"; mv "$tmp" "$out"
    echo "$out/  ($triple, static)"
    (cd "$out" && find . -type f | sort | while read -r f; do printf '  %-44s %9d bytes\n' "${f#./}" "$(stat -c %s "$f")"; done)

_cross-tools arch:
    #!/usr/bin/env bash
    set -euo pipefail
    case "{{arch}}" in
        aarch64|x86_64) ;;
        *) echo "ARCH is aarch64 (Raspberry Pi 4/5, 64-bit OS) or x86_64, not '{{arch}}'" >&2; exit 2 ;;
    esac
    triple="{{arch}}-unknown-linux-musl"
    if ! rustup target list --installed | grep -qx "$triple"; then
        rustup target add "$triple"
    fi
    # cargo-zigbuild and Zig itself, both from PyPI (cargo-zigbuild finds `python3 -m ziglang`).
    if ! command -v cargo-zigbuild >/dev/null 2>&1 || ! python3 -m ziglang version >/dev/null 2>&1; then
        python3 -m pip install --quiet ziglang cargo-zigbuild
        if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
        hash -r
    fi
    command -v cargo-zigbuild >/dev/null 2>&1 || { echo "cargo-zigbuild was installed but is not on PATH" >&2; exit 1; }

# Run dist/aarch64 under qemu-user: the default pipeline end to end (check, run, fixtures), the sandbox limits, and a Python guest precompiled for aarch64, on Cranelift's arm64 backend
check-qemu: (dist "aarch64")
    #!/usr/bin/env bash
    set -euo pipefail
    command -v qemu-aarch64-static >/dev/null 2>&1 || { echo "needs qemu-aarch64-static: apt-get install -y qemu-user-static" >&2; exit 1; }
    # With the tests' set, not alone: hostile alone resolves other features of the SDK and
    # would build it a second time.
    packages=(); for g in {{test_guests}}; do packages+=(-p "$g"); done
    cargo build --quiet --profile guest --target wasm32-wasip2 --target-dir {{guest_target}} "${packages[@]}"
    hostile="$PWD/{{guest_target}}/wasm32-wasip2/guest/hostile.wasm"
    # A copy outside the repository, as on a Pi, in a clean environment: neither this
    # shell's variables nor a .env here (dotenv looks in parent directories) reach the binary.
    work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
    cp -r dist/aarch64 "$work/pi-agent"
    cp guests/dist/py-persona.wasm "$work/pi-agent/guests/dist/"
    cd "$work/pi-agent"
    pi() { env -i PATH="$PATH" DATA_DIR="$work/data" qemu-aarch64-static ./pi-agent "$@"; }
    TIMEFORMAT="  %R s (emulated aarch64, qemu-user)"
    echo "== pi-agent --version"; pi --version
    echo "== pipeline check (cold: Cranelift compiles both guests for aarch64)"
    time pi pipeline check
    echo "== pipeline run (cached: the compiled guests come from DATA_DIR/cache)"
    time pi pipeline run --message "hi" --reply "**bold** <script>" | tee "$work/run.txt"
    grep -qx '<b>bold</b> &lt;script&gt;' "$work/run.txt" || { echo "FAILED: the reply was not shaped" >&2; exit 1; }
    echo "== pipeline test (the shipped fixtures)"
    time pi pipeline test
    echo "== limits: a guest that loops, one that allocates without bound, one that panics"
    printf '[[stage]]\nname = "hostile"\nguest = "%s"\ntimeout_ms = 300\nmemory_limit_mib = 16\n' "$hostile" > "$work/hostile.toml"
    for case in "loop:ran longer than its 300ms limit" "alloc:needed more than its 16 MiB memory limit" "panic:panicked"; do
        message="${case%%:*}"; expect="^error: .*${case#*:}"
        if pi pipeline run --manifest "$work/hostile.toml" --message "$message" > "$work/out.txt" 2>&1; then
            echo "FAILED: '$message' succeeded" >&2; cat "$work/out.txt" >&2; exit 1
        fi
        grep -q "$expect" "$work/out.txt" || { echo "FAILED: '$message' did not fail as expected:" >&2; cat "$work/out.txt" >&2; exit 1; }
        echo "  $message → $(grep -m1 "$expect" "$work/out.txt")"
    done
    echo "== a Python guest: py-persona compiled for aarch64 into precompiled/ (the very bytes a PC writes with --target aarch64), then loaded from there"
    time pi pipeline compile --target aarch64 guests/dist/py-persona.wasm
    sed 's|guests/dist/persona.wasm|guests/dist/py-persona.wasm|' pipeline.toml > py-persona.toml
    time pi pipeline check --manifest py-persona.toml | tee "$work/check.txt"
    grep -q '^persona .* precompiled ' "$work/check.txt" || { echo "FAILED: py-persona was not loaded from precompiled/" >&2; exit 1; }
    echo "== pipeline test with the Python persona (the shipped fixtures)"
    time pi pipeline test --manifest py-persona.toml
    echo "ok: dist/aarch64 runs the pipeline under emulation"

# Build the amd64 image and run it with docker compose against a fake Telegram and Ollama on loopback until one message is answered (root; starts and stops its own dockerd)
check-docker: (dist "x86_64")
    #!/usr/bin/env bash
    set -euo pipefail
    command -v dockerd >/dev/null 2>&1 || { echo "needs Docker: apt-get install -y docker.io docker-compose" >&2; exit 1; }
    cargo build --quiet -p pi-agent-tests --example fakes
    # A daemon of our own (its own socket, state and storage), whatever else runs here.
    work=$(mktemp -d /tmp/pi-agent-docker.XXXXXX)
    dockerd --storage-driver=vfs --iptables=false --bridge=none --data-root "$work/root" \
        --exec-root "$work/exec" --pidfile "$work/dockerd.pid" -H "unix://$work/docker.sock" \
        > "$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    export DOCKER_HOST="unix://$work/docker.sock"
    # BuildKit: built into Docker ≥ 23 (with buildx) and into Debian's 20.10 CLI.
    docker=(docker)
    if ! docker buildx version >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then docker=(/usr/bin/docker); fi
    if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
    compose+=(-p pi-agent-check)
    export PI_AGENT_IMAGE=pi-agent:check PI_AGENT_ENV_FILE="$work/bot.env"
    fakes_pid=
    cleanup() {
        status=$?
        if [ "$status" -ne 0 ]; then
            echo "--- fakes"; cat "$work/fakes.log" 2>/dev/null || true
            echo "--- bot"; "${compose[@]}" logs --no-color 2>/dev/null | tail -40 || true
            echo "--- dockerd"; tail -20 "$work/dockerd.log" || true
        fi
        "${compose[@]}" down -v --timeout 30 >/dev/null 2>&1 || true
        if [ -n "$fakes_pid" ]; then kill "$fakes_pid" 2>/dev/null || true; fi
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
        # dockerd leaves its network namespace mounted under its exec root.
        findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r -n1 umount 2>/dev/null || true
        rm -rf "$work" || echo "could not remove $work" >&2
        exit "$status"
    }
    trap cleanup EXIT
    for _ in $(seq 60); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
    docker version --format 'dockerd {{{{.Server.Version}}'
    echo "== image"
    DOCKER_BUILDKIT=1 "${docker[@]}" build --quiet --platform linux/amd64 -t pi-agent:check . >/dev/null
    size() {
        docker image inspect "$1" --format '{{{{.Os}}/{{{{.Architecture}}  {{{{.Size}}' |
            awk -v tag="$1" -v note="$2" '{ printf "%-22s %s  %s bytes (%.1f MB)%s\n", tag, $1, $2, $2 / 1e6, note }'
    }
    size pi-agent:check ""
    # The Pi's image too, if dist/aarch64 is there: FROM scratch needs no emulation to build.
    if [ -x dist/aarch64/pi-agent ]; then
        DOCKER_BUILDKIT=1 "${docker[@]}" build --quiet --platform linux/arm64 -t pi-agent:check-arm64 . >/dev/null
        size pi-agent:check-arm64 "  (built, not run here)"
    fi
    echo "== docker compose up, against the fakes"
    target/debug/examples/fakes "$work/bot.env" --timeout 120 --linger 600 > "$work/fakes.log" 2>&1 &
    fakes_pid=$!
    for _ in $(seq 100); do [ -f "$work/bot.env" ] && break; sleep 0.1; done
    "${compose[@]}" up -d --no-build
    for _ in $(seq 150); do
        grep -q '^ok:' "$work/fakes.log" && break
        kill -0 "$fakes_pid" 2>/dev/null || break
        sleep 1
    done
    cat "$work/fakes.log"
    grep -q '^ok:' "$work/fakes.log" || { echo "FAILED: the bot in the container did not answer" >&2; exit 1; }
    echo "== the healthcheck's command, and the full doctor, in the container"
    "${compose[@]}" exec -T agent /usr/local/bin/pi-agent health
    "${compose[@]}" exec -T agent /usr/local/bin/pi-agent doctor
    docker stats --no-stream --format 'memory: {{{{.MemUsage}}' "$("${compose[@]}" ps -q agent)"
    echo "ok: the image answered one message through docker compose"

# Both deployment checks: dist/aarch64 under qemu, and the image under docker compose
check-deploy: check-qemu check-docker
