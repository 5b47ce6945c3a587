//! `strait check DIR`: every problem as `file:doc: field.path: reason`.

use std::path::Path;
use std::process::ExitCode;
use strait_route::{compile, CompileOptions};

/// The folder read and compiled: the snapshot a gateway would serve, and
/// every problem found.
fn load(
    dir: &Path,
    controller_name: &str,
) -> (
    strait_config::ResourceSet,
    strait_route::Snapshot,
    Vec<strait_config::Problem>,
) {
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
    (set, snapshot, problems)
}

/// The snapshot of the folder, and how many errors it has.
pub fn compiled(dir: &Path, controller_name: &str) -> (strait_route::Snapshot, usize) {
    let (_, snapshot, problems) = load(dir, controller_name);
    let errors = problems.iter().filter(|p| p.is_error()).count();
    (snapshot, errors)
}

pub fn run(dir: &Path, controller_name: &str) -> ExitCode {
    let (set, snapshot, problems) = load(dir, controller_name);
    let errors = problems.iter().filter(|p| p.is_error()).count();
    let warnings = problems.len() - errors;
    for p in &problems {
        println!("{p}");
    }
    for line in policies(&snapshot) {
        println!("{line}");
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

/// Each policy's targets and whether it applies there; a
/// RateLimitPolicy's rules as it counts them; what an ApiSchemaPolicy's
/// document describes.
fn policies(snapshot: &strait_route::Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    let all = snapshot.authn.statuses().iter();
    let all = all.chain(snapshot.ratelimit.statuses());
    for p in all.chain(snapshot.apischema.statuses()) {
        for a in &p.ancestors {
            let r = &a.reference;
            let target = format!(
                "{} {}",
                r["kind"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or("")
            );
            let section = r["sectionName"]
                .as_str()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            let accepted = a.conditions.iter().find(|c| c.kind == "Accepted");
            let state = match accepted {
                Some(c) if c.status => "applies".to_string(),
                Some(c) => format!("does not apply ({}): {}", c.reason, c.message),
                None => "unknown".to_string(),
            };
            out.push(format!(
                "{} {}/{} -> {target}{section}: {state}",
                p.kind, p.namespace, p.name
            ));
        }
    }
    for p in snapshot.ratelimit.all() {
        for rule in &p.rules {
            out.push(format!(
                "RateLimitPolicy {} rule {}",
                p.policy,
                rule.describe()
            ));
        }
        if let Some(redis) = &p.redis {
            let mode = if redis.fail_closed { "Closed" } else { "Open" };
            out.push(format!(
                "RateLimitPolicy {} counts global rules in {} (timeout {:?}, failure mode {mode})",
                p.policy,
                redis.describe(),
                redis.timeout
            ));
        }
    }
    for p in snapshot.apischema.all() {
        if let Some(api) = &p.api {
            let unknown = match p.reject_unknown {
                true => "refused",
                false => "passed unchecked",
            };
            out.push(format!(
                "ApiSchemaPolicy {}: {} under {}; other requests {unknown}; JSON bodies up to {} bytes",
                p.policy,
                count(api.operations, "operation"),
                api.base(),
                p.max_body
            ));
        }
    }
    out
}

/// `1 route`, `2 routes`.
pub fn count(n: usize, thing: &str) -> String {
    match n {
        1 => format!("1 {thing}"),
        _ => format!("{n} {thing}s"),
    }
}
