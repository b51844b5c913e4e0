//! Builds the guests the tests use (the default ones and the test guests) for
//! wasm32-wasip2, and emits `pub const NAME: &str = "<path>.wasm"` for each, so tests refer
//! to guests by constant, never by a hand-written path. Guests are never committed.

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

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap();
    let guest_dirs = GUESTS.iter().map(|guest| format!("guests/{guest}"));
    for watched in guest_dirs.chain(["guests/sdk", "wit", "Cargo.lock"].map(String::from)) {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
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

    let mut consts = String::new();
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
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("guests.rs");
    std::fs::write(out, consts).unwrap();
}
