//! Kubernetes and Gateway API resources as strait reads them.
//!
//! This crate turns YAML text into typed resources and reports every problem
//! with its file, document number and field path. It does no I/O beyond
//! reading the files it is pointed at.

pub mod apischema;
pub mod auth;
pub mod backendtls;
pub mod core;
pub mod duration;
pub mod gateway;
pub mod grpcroute;
pub mod httproute;
pub mod l4route;
mod load;
pub mod meta;
mod problem;
pub mod ratelimit;
pub mod security;
pub mod telemetry;
pub mod traffic;
pub mod validate;

pub use load::{
    load_dir, load_dir_cached, may_hold_manifests, parse_text, parse_value, split_text, yaml_files,
    Document, Flat, Object, ParseCache, Resource, ResourceSet,
};
pub use problem::{Problem, Severity, Source};

/// The controller name strait answers to unless told otherwise.
pub const DEFAULT_CONTROLLER_NAME: &str = "strait.dev/gateway-controller";
