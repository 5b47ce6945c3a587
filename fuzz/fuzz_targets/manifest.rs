//! Any text as a manifest file: parsed, validated and compiled as a folder
//! of it would be, then described as `/config` shows it. Nothing may panic;
//! a refused file must name the file in every problem.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use strait_route::{compile, CompileOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.yaml");
    let set = strait_config::parse_text(file, text);
    for p in &set.problems {
        assert_eq!(&*p.source.file, file, "a problem must name its file: {p}");
    }
    let options = CompileOptions {
        controller_name: strait_config::DEFAULT_CONTROLLER_NAME.to_string(),
    };
    let (snapshot, problems) = compile(&set.documents, &options, std::time::UNIX_EPOCH);
    for p in &problems {
        let _ = p.to_string();
    }
    let _ = snapshot.describe().to_string();
});
