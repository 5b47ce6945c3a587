//! What a control plane sends a proxy: any bytes as a stream of
//! length-delimited `Update` messages, joined and applied as the proxy's
//! client does, then parsed and compiled as the proxy would. The objects
//! after each accepted update must be what a plain map model says; a
//! delta from another version must be refused and change nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::collections::BTreeMap;
use strait_api::pb;
use strait_api::snapshot::{Joined, Snapshot};
use strait_route::{compile, CompileOptions};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    let mut snapshot = Snapshot::default();
    let mut model: BTreeMap<String, pb::Entry> = BTreeMap::new();
    let mut joined = Joined::default();
    let mut parts = Vec::new();
    while let Ok(part) = pb::Update::decode_length_delimited(&mut buf) {
        let (version, base, more) = (part.version.clone(), part.base.clone(), part.more);
        parts.push(part.clone());
        joined.add(part);
        if more {
            continue;
        }
        let update = std::mem::take(&mut joined);
        let before = snapshot.clone();
        let result = snapshot.apply(version.clone(), &base, update);
        if !base.is_empty() && base != before.version {
            assert!(
                result.is_err(),
                "a delta from {base:?} applied to {:?}",
                before.version
            );
            assert_eq!(snapshot, before);
            parts.clear();
            continue;
        }
        assert!(result.is_ok());
        if base.is_empty() {
            model.clear();
        }
        // Removals of the whole update first, then its entries in order.
        let parts: Vec<pb::Update> = parts.drain(..).collect();
        for key in parts.iter().flat_map(|p| &p.removed) {
            model.remove(key);
        }
        for e in parts.into_iter().flat_map(|p| p.entries) {
            model.insert(e.key.clone(), e);
        }
        assert_eq!(snapshot.objects, model);
        assert_eq!(snapshot.version, version);
        let set = snapshot.resources();
        let options = CompileOptions {
            controller_name: strait_config::DEFAULT_CONTROLLER_NAME.to_string(),
        };
        let _ = compile(&set.documents, &options, std::time::UNIX_EPOCH);
    }
});
