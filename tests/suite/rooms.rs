//! The host's rooms depend one way: the map in `host/src/lib.rs` is read, the imports under
//! `host/src/` are read, and the two must agree, without a circle.
//!
//! A room is a top-level module (`chat/`, `zone.rs`, …). An import is any `crate::room`
//! path in code (comments and `#[cfg(test)] mod` blocks aside: tests may reach anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn host_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src")
}

/// The map in `lib.rs`'s ```` ```text ```` block: `room → a, b` lines, and one line of
/// leaves before `(`.
fn documented() -> Graph {
    let lib = fs::read_to_string(host_src().join("lib.rs")).unwrap();
    let mut lines = lib.lines().map(|l| l.trim_start_matches("//!").trim());
    lines
        .find(|l| *l == "```text")
        .expect("lib.rs has a ```text map");
    let mut graph = Graph::new();
    for line in lines.take_while(|l| *l != "```") {
        match line.split_once('→') {
            Some((room, deps)) => {
                let deps = deps.split(',').map(|d| d.trim().to_owned());
                graph.insert(room.trim().to_owned(), deps.collect());
            }
            None => {
                let leaves = line.split('(').next().unwrap();
                for leaf in leaves.split(',') {
                    graph.insert(leaf.trim().to_owned(), BTreeSet::new());
                }
            }
        }
    }
    graph
}

/// What the code imports, room by room.
fn imported() -> Graph {
    let root = host_src();
    let mut graph = Graph::new();
    for entry in fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let room = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if room == "lib" || room == "main" {
            continue;
        }
        let mut deps = BTreeSet::new();
        for file in rust_files(&path) {
            for dep in crate_paths(&fs::read_to_string(&file).unwrap()) {
                if dep != room {
                    deps.insert(dep);
                }
            }
        }
        graph.insert(room, deps);
    }
    graph
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).unwrap() {
        files.extend(rust_files(&entry.unwrap().path()));
    }
    files
}

/// The rooms a file's code names as `crate::room` or `crate::{room, …}`.
fn crate_paths(source: &str) -> BTreeSet<String> {
    let code: String = source
        .split("#[cfg(test)]\nmod ")
        .next()
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rooms = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let end = group
                .find(|c| {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => return true,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .unwrap();
            let mut part = String::new();
            let mut depth = 0;
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        rooms.insert(leading_ident(&part));
                        part.clear();
                        continue;
                    }
                    _ => {}
                }
                part.push(c);
            }
        } else {
            rooms.insert(leading_ident(rest));
        }
    }
    rooms.retain(|r| !r.is_empty());
    rooms
}

fn leading_ident(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// A circle in `graph`, if it has one (depth-first search).
fn circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        room: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|r| r == room) {
            let mut circle = path[at..].to_vec();
            circle.push(room.to_owned());
            return Some(circle);
        }
        if done.contains(room) {
            return None;
        }
        path.push(room.to_owned());
        for dep in graph.get(room).into_iter().flatten() {
            if let Some(circle) = visit(graph, dep, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(room.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|room| visit(graph, room, &mut Vec::new(), &mut done))
}

#[test]
fn the_rooms_depend_as_lib_rs_says_and_never_in_a_circle() {
    let (documented, imported) = (documented(), imported());
    assert!(imported.len() > 10, "found the rooms: {imported:?}");
    assert_eq!(circle(&documented), None, "lib.rs's map has a circle");
    for (room, deps) in &imported {
        let Some(allowed) = documented.get(room) else {
            panic!("room `{room}` is missing from lib.rs's map");
        };
        let undocumented: Vec<_> = deps.difference(allowed).collect();
        let stale: Vec<_> = allowed.difference(deps).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "`{room}` imports {undocumented:?} that lib.rs's map does not show, and the map \
             shows {stale:?} that it does not import: make the code or the map true"
        );
    }
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        imported.keys().collect::<Vec<_>>(),
        "lib.rs's map names rooms that do not exist"
    );
    assert_eq!(circle(&imported), None);
}

#[test]
fn the_import_reader_sees_every_form_of_path_and_the_check_finds_circles() {
    let source = "use crate::chat::Job;\nuse crate::{ids::ChatId, zone::{Zone, Utc}};\n\
                  // crate::web in a comment\nfn f() { crate::clock::now(); }\n\
                  #[cfg(test)]\nmod tests { use crate::store; }\n";
    let found: Vec<_> = crate_paths(source).into_iter().collect();
    assert_eq!(found, ["chat", "clock", "ids", "zone"]);

    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(room, dep)| (room.to_owned(), BTreeSet::from([dep.to_owned()])))
        .collect();
    assert_eq!(circle(&graph).unwrap(), ["a", "b", "c", "a"]);
}
