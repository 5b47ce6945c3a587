//! Status in the shape of Gateway API conditions, computed at compile time
//! and served by the admin endpoint and `strait check`.

use serde::Serialize;
use strait_config::Source;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: bool,
    /// One of the spec's reasons: a constant, so that 10,000 routes' two
    /// conditions each allocate nothing when all is well.
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    pub fn ok(kind: &'static str, reason: &'static str) -> Self {
        Condition {
            kind,
            status: true,
            reason,
            message: String::new(),
        }
    }

    pub fn failed(kind: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Condition {
            kind,
            status: false,
            reason,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ListenerStatus {
    pub name: String,
    pub attached_routes: usize,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayStatus {
    pub namespace: String,
    pub name: String,
    pub source: Source,
    pub conditions: Vec<Condition>,
    pub listeners: Vec<ListenerStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParentStatus {
    /// `namespace/name[/sectionName][:port]`.
    pub parent: String,
    /// The route's parentRef this is about, as written (what a status
    /// written back to the API server names).
    /// Boxed: 10,000 routes' parents hold 10,000 of these, which only a
    /// status written to a cluster reads.
    #[serde(skip)]
    pub reference: Option<Box<strait_config::meta::ParentReference>>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub source: Source,
    pub parents: Vec<ParentStatus>,
}

/// A policy's status (GEP-713): one entry per target, its `Accepted`
/// (`Invalid`, `TargetNotFound`, `Conflicted`) and `ResolvedRefs`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub ancestors: Vec<AncestorStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AncestorStatus {
    /// The target as a reference: group, kind, name, namespace and
    /// sectionName when it has one.
    pub reference: serde_json::Value,
    pub conditions: Vec<Condition>,
}
