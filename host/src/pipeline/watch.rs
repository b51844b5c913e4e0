//! Watches a pipeline's files — the manifest and every guest it names — and reports when
//! they changed, debounced.
//!
//! The *directories* are watched, not the files: tools replace files by renaming a new one
//! into place (`just build-guests` does), which a watch on the old file's inode would miss,
//! and a directory bind-mounted into a container keeps working the same way.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::background::Background;
use tokio::sync::mpsc;

/// Quiet time after the last change before reporting: a build writes several files.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// Report at the latest this long after the first change, even if writes keep coming.
const MAX_DELAY: Duration = Duration::from_secs(3);

/// A running watch; stops when dropped.
pub struct PipelineWatch {
    watcher: RecommendedWatcher,
    dirs: HashSet<PathBuf>,
    files: std::sync::Arc<std::sync::Mutex<HashSet<PathBuf>>>,
}

impl PipelineWatch {
    /// Starts watching `files`; `changed` receives one message per debounced burst (the
    /// debounce runs in `background`).
    pub fn start(
        files: impl IntoIterator<Item = PathBuf>,
        changed: mpsc::Sender<()>,
        background: &Background,
    ) -> notify::Result<Self> {
        let watched: std::sync::Arc<std::sync::Mutex<HashSet<PathBuf>>> = Default::default();
        let (raw_tx, raw_rx) = mpsc::unbounded_channel::<()>();
        let filter = watched.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            // Opening and reading a file (as every reload does) is not a change.
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            let files = filter.lock().unwrap_or_else(|e| e.into_inner());
            if event.paths.iter().any(|p| files.contains(&normalize(p))) {
                let _ = raw_tx.send(());
            }
        })?;
        background.spawn_until_shutdown(debounce(raw_rx, changed));
        let mut watch = Self {
            watcher,
            dirs: HashSet::new(),
            files: watched,
        };
        watch.set_files(files)?;
        Ok(watch)
    }

    /// Replaces the set of watched files (after a reload the manifest may name others).
    pub fn set_files(&mut self, files: impl IntoIterator<Item = PathBuf>) -> notify::Result<()> {
        let files: HashSet<PathBuf> = files.into_iter().map(|f| normalize(&f)).collect();
        let dirs: HashSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_owned))
            .collect();
        for gone in self.dirs.difference(&dirs) {
            let _ = self.watcher.unwatch(gone);
        }
        for new in dirs.difference(&self.dirs) {
            self.watcher.watch(new, RecursiveMode::NonRecursive)?;
        }
        self.dirs = dirs;
        *self.files.lock().unwrap_or_else(|e| e.into_inner()) = files;
        Ok(())
    }
}

/// The absolute path of `path` with its directory resolved (the file itself may be
/// missing for a moment during a build).
fn normalize(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_owned())
            .join(name),
        _ => absolute,
    }
}

async fn debounce(mut raw: mpsc::UnboundedReceiver<()>, changed: mpsc::Sender<()>) {
    while raw.recv().await.is_some() {
        let burst_end = tokio::time::Instant::now() + MAX_DELAY;
        loop {
            let quiet = tokio::time::sleep(DEBOUNCE);
            tokio::select! {
                more = raw.recv() => if more.is_none() { return },
                () = quiet => break,
                () = tokio::time::sleep_until(burst_end) => break,
            }
        }
        if changed.send(()).await.is_err() {
            return;
        }
    }
}
