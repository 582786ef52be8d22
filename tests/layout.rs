//! The source keeps its shape: each layer imports only the layers above it (src/lib.rs lists
//! them), and no file grows past what one reading takes in.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The files of module `name`: `src/NAME.rs` and everything under `src/NAME/`.
fn module_files(name: &str) -> Vec<PathBuf> {
    let mut files = vec![src().join(format!("{name}.rs"))];
    let dir = src().join(name);
    if dir.is_dir() {
        files.extend(rust_files(&dir));
    }
    files
}

/// The lines of `files` that use one of `modules` of this crate, outside comments.
fn uses_of(files: &[PathBuf], modules: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for module in modules {
                if code.contains(&format!("crate::{module}")) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

const RUNTIME: [&str; 11] = [
    "upstream",
    "targets",
    "access",
    "listener",
    "proxy",
    "reverse",
    "agent",
    "agent_role",
    "admin",
    "service",
    "reload",
];

#[test]
fn settings_import_nothing_below_them() {
    let mut below = vec!["material"];
    below.extend(RUNTIME);
    let found = uses_of(&module_files("config"), &below);
    assert!(
        found.is_empty(),
        "config imports a lower layer:\n{}",
        found.join("\n")
    );
}

#[test]
fn material_imports_nothing_of_the_runtime() {
    let found = uses_of(&module_files("material"), &RUNTIME);
    assert!(
        found.is_empty(),
        "material imports the runtime:\n{}",
        found.join("\n")
    );
}

#[test]
fn reaching_exporters_imports_nothing_of_requests() {
    let mut files = module_files("upstream");
    files.extend(module_files("targets"));
    files.extend(module_files("access"));
    let found = uses_of(
        &files,
        &[
            "proxy",
            "reverse",
            "agent",
            "agent_role",
            "admin",
            "service",
            "reload",
            "listener",
        ],
    );
    assert!(
        found.is_empty(),
        "a lower layer imports proxy or admin:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_listener_reverse_and_agent_mode_import_nothing_of_the_proxy() {
    let mut files = module_files("listener");
    files.extend(module_files("reverse"));
    files.extend(module_files("agent"));
    let found = uses_of(
        &files,
        &["proxy", "admin", "service", "reload", "agent_role"],
    );
    assert!(
        found.is_empty(),
        "the listener, reverse or agent mode imports the proxy:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_source_file_is_over_400_lines() {
    let long: Vec<String> = rust_files(&src())
        .into_iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(&file).ok()?.lines().count();
            (lines > 400).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these: {}", long.join(", "));
}
