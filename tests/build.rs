//! Builds the guests the tests use (the default ones and the test guests) for
//! wasm32-wasip2 — the Rust ones with cargo, the Python ones with componentize-py (through
//! `guests/sdk-py/py-guest`, at the same time) — and emits `pub const NAME: &str =
//! "<path>.wasm"` for each, so tests refer to guests by constant, never by a hand-written
//! path. Guests are never committed.

use std::path::{Path, PathBuf};
use std::process::Command;

const GUESTS: &[&str] = &[
    "persona",
    "telegram-html",
    "weather",
    "hostile",
    "not-a-stage",
    "legacy-shout",
    "legacy-kv",
    "news",
    "calendar",
];

/// Python guests: directories with an `app.py`, built by `guests/sdk-py/py-guest`.
const PYTHON_GUESTS: &[&str] = &["py-persona", "py-redact", "py-hostile"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap();
    let guest_dirs = GUESTS
        .iter()
        .chain(PYTHON_GUESTS)
        .map(|guest| format!("guests/{guest}"));
    let shared = ["guests/sdk", "guests/sdk-py", "wit", "Cargo.lock"].map(String::from);
    for watched in guest_dirs.chain(shared) {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // Started first, so componentize-py works while cargo builds the Rust guests.
    let python = Command::new(root.join("guests/sdk-py/py-guest"))
        .arg("build")
        .args(PYTHON_GUESTS)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running guests/sdk-py/py-guest to build the Python test guests");
    // The same target dir and profile as `just build-guests`, so each is built once. A
    // separate dir from the outer build's also avoids waiting on its lock.
    let target_dir = root.join("target/guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args([
            "build",
            "--profile",
            "guest",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for guest in GUESTS {
        command.args(["-p", guest]);
    }
    // Flags meant for this (native) build must not leak into the wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .expect("running cargo to build the test guests");
    assert!(
        status.success(),
        "building the guests for wasm32-wasip2 failed; if the target is missing, run `bash .ci/setup` \
         (or `rustup target add wasm32-wasip2`)"
    );

    let python = python
        .wait_with_output()
        .expect("building the Python guests");
    assert!(
        python.status.success(),
        "building the Python guests failed (see above); `bash .ci/setup` installs componentize-py"
    );
    let python_paths = String::from_utf8(python.stdout).expect("py-guest prints paths");

    let mut consts = String::new();
    for (guest, wasm) in PYTHON_GUESTS.iter().zip(python_paths.lines()) {
        consts.push_str(&format!(
            "/// `{guest}` (Python) built with componentize-py.\npub const {}: &str = {wasm:?};\n",
            guest.replace('-', "_").to_uppercase(),
        ));
    }
    consts.push_str(&format!(
        "/// Every Python guest above.\npub const PYTHON: &[&str] = &[{}];\n",
        PYTHON_GUESTS
            .iter()
            .map(|g| g.replace('-', "_").to_uppercase())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for guest in GUESTS {
        // Libraries' files use underscores, binaries' keep the package name.
        let out = target_dir.join("wasm32-wasip2/guest");
        let wasm = [guest.replace('-', "_"), guest.to_string()]
            .map(|name| out.join(format!("{name}.wasm")))
            .into_iter()
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{guest} was not built"));
        consts.push_str(&format!(
            "/// `{guest}` built for wasm32-wasip2.\npub const {}: &str = {:?};\n",
            guest.replace('-', "_").to_uppercase(),
            wasm.display().to_string()
        ));
    }
    // Rewritten only when it changes: a new file would rebuild every test binary.
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("guests.rs");
    if std::fs::read_to_string(&out).ok().as_deref() != Some(consts.as_str()) {
        std::fs::write(out, consts).unwrap();
    }
}
