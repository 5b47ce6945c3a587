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
        std::time::SystemTime::now(),
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
        "{}, {}, {}: {}, {}",
        count(set.documents.len(), "document"),
        count(listeners, "listener"),
        count(snapshot.routes.len(), "route"),
        count(errors, "error"),
        count(warnings, "warning"),
    );
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `1 route`, `2 routes`.
fn count(n: usize, thing: &str) -> String {
    match n {
        1 => format!("1 {thing}"),
        _ => format!("{n} {thing}s"),
    }
}
