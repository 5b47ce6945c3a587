//! `strait check DIR`: every problem as `file:doc: field.path: reason`.

use std::path::Path;
use std::process::ExitCode;
use strait_route::{compile, CompileOptions};

pub fn run(dir: &Path, controller_name: &str) -> ExitCode {
    let set = strait_config::load_dir(dir);
    let mut problems = set.problems.clone();
    // Semantic checks need a schema-valid set; schema errors are reported first.
    let (snapshot, compiled) = compile(
        &set.documents,
        &CompileOptions {
            controller_name: controller_name.to_string(),
        },
    );
    problems.extend(compiled);
    let errors = problems.iter().filter(|p| p.is_error()).count();
    let warnings = problems.len() - errors;
    for p in &problems {
        println!("{p}");
    }
    let listeners: usize = snapshot
        .ports
        .values()
        .map(|p| p.listeners.values().count())
        .sum();
    println!(
        "{} documents, {} listeners, {} routes: {errors} errors, {warnings} warnings",
        set.documents.len(),
        listeners,
        snapshot.routes.len()
    );
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
