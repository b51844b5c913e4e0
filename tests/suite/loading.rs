//! Loading pipelines: roles from exports, clear errors for bad manifests and guests, and the
//! on-disk compile cache (hits, and corrupt entries rebuilt rather than trusted).

use pi_agent::pipeline::{CompileCache, CompileSource, LoadError, Role};
use pi_agent_tests::{Scratch, guests, load, try_load};

#[tokio::test]
async fn roles_are_detected_from_exports() {
    let scratch = Scratch::default();
    let pipeline = load(&scratch.manifest(&format!(
        "[[stage]]\nname = \"p\"\nguest = {:?}\n[[stage]]\nname = \"t\"\nguest = {:?}\n[[stage]]\nname = \"h\"\nguest = {:?}\n",
        guests::PERSONA,
        guests::TELEGRAM_HTML,
        guests::HOSTILE
    ))).await;
    let roles: Vec<_> = pipeline
        .stages()
        .map(|s| (s.name.clone(), s.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("p".into(), Role::Formatter),
            ("t".into(), Role::Shaper),
            ("h".into(), Role::Both)
        ]
    );
}

#[tokio::test]
async fn a_missing_guest_names_the_stage_and_the_fix() {
    let scratch = Scratch::default();
    let error = try_load(
        &scratch.single_stage("ghost", "nowhere/ghost.wasm", ""),
        &CompileCache::disabled(),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(error, LoadError::ReadGuest { ref stage, .. } if stage == "ghost"));
    let message = error.to_string();
    assert!(
        message.contains("stage 'ghost'")
            && message.contains("nowhere/ghost.wasm")
            && message.contains("just build-guests"),
        "{message}"
    );
}

#[tokio::test]
async fn garbage_bytes_are_not_a_component() {
    let scratch = Scratch::default();
    let garbage = scratch.path().join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not wasm").unwrap();
    let error = try_load(
        &scratch.single_stage("junk", garbage.to_str().unwrap(), ""),
        &CompileCache::disabled(),
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(error, LoadError::Compile { ref stage, .. } if stage == "junk"),
        "{error}"
    );
}

#[tokio::test]
async fn a_core_module_without_our_exports_has_no_role() {
    let scratch = Scratch::default();
    // The smallest valid *core* module: not a component at all.
    let module = scratch.path().join("core.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let error = try_load(
        &scratch.single_stage("core", module.to_str().unwrap(), ""),
        &CompileCache::disabled(),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(error, LoadError::Compile { .. }), "{error}");
}

#[tokio::test]
async fn a_bad_manifest_names_the_file_and_the_problem() {
    let scratch = Scratch::default();
    let path = scratch.manifest("[[stage]]\nname = \"x\"\n");
    let error = try_load(&path, &CompileCache::disabled())
        .await
        .err()
        .unwrap();
    let message = error.to_string();
    assert!(
        message.contains(path.to_str().unwrap()) && message.contains("missing field `guest`"),
        "{message}"
    );
}

#[tokio::test]
async fn the_compile_cache_is_used_and_corrupt_entries_are_rebuilt() {
    let scratch = Scratch::default();
    let manifest = scratch.single_stage("persona", guests::PERSONA, "");
    let cache_dir = scratch.path().join("cache");
    let cache = CompileCache::new(cache_dir.clone());
    let source = async || {
        try_load(&manifest, &cache)
            .await
            .unwrap()
            .stages()
            .next()
            .unwrap()
            .source
    };

    assert_eq!(
        source().await,
        CompileSource::Compiled,
        "first load compiles"
    );
    assert_eq!(
        source().await,
        CompileSource::Cache,
        "second load comes from the cache"
    );

    let entry = std::fs::read_dir(&cache_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    assert_eq!(
        source().await,
        CompileSource::Compiled,
        "a corrupt entry is detected and rebuilt"
    );
    assert_eq!(
        source().await,
        CompileSource::Cache,
        "the rebuilt entry is valid"
    );

    std::fs::write(&entry, &bytes[..100]).unwrap();
    assert_eq!(
        source().await,
        CompileSource::Compiled,
        "a truncated entry is detected and rebuilt"
    );
    let pipeline = try_load(&manifest, &cache).await.unwrap();
    assert_eq!(
        pipeline.stages().next().unwrap().source,
        CompileSource::Cache
    );
}
