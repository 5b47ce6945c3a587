//! `BackendTrafficPolicy` → a cluster's [`Traffic`] settings; problems
//! with their file and field path. The policy in the Service's namespace
//! naming the Service (or its port by `sectionName`) applies; one naming
//! the port wins over one for the whole Service, then the oldest.

use crate::balance::{Breaker, HashKey, LbKind, Outlier, Traffic};
use crate::balance::{
    DEFAULT_BASE_EJECTION, DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_MAX_EJECTION_PERCENT,
};
use strait_config::traffic::BackendTrafficPolicySpec;
use strait_config::{duration, Document, Object, Problem, Resource};

type Finding = (String, String);

/// The settings for Service `ns/name` port `port_name`.
pub(crate) fn for_service(
    docs: &[Document],
    ns: &str,
    name: &str,
    port_name: Option<&str>,
) -> Traffic {
    let policies = docs.iter().filter_map(|d| match &d.resource {
        // A policy with a bad field is reported and not applied.
        Resource::BackendTrafficPolicy(p) if check(&p.spec).is_empty() => Some(p),
        _ => None,
    });
    crate::policy::select(policies, |s| &s.target_refs, ns, name, port_name)
        .map_or_else(Traffic::default, traffic)
}

fn traffic(policy: &Object<BackendTrafficPolicySpec>) -> Traffic {
    let spec = &policy.spec;
    let lb = match &spec.load_balancer {
        None => LbKind::PeakEwma,
        Some(lb) => match lb.kind.as_str() {
            "RoundRobin" => LbKind::RoundRobin,
            "LeastRequest" => LbKind::LeastRequest,
            "ConsistentHash" => match &lb.consistent_hash {
                Some(h) => match (&h.header, &h.cookie) {
                    (Some(header), _) => match http::HeaderName::from_bytes(header.as_bytes()) {
                        Ok(n) => LbKind::ConsistentHash(HashKey::Header(n)),
                        Err(_) => LbKind::PeakEwma,
                    },
                    (None, Some(cookie)) => LbKind::ConsistentHash(HashKey::Cookie(cookie.clone())),
                    (None, None) => LbKind::PeakEwma,
                },
                None => LbKind::PeakEwma,
            },
            _ => LbKind::PeakEwma,
        },
    };
    let breaker = spec
        .circuit_breaker
        .as_ref()
        .and_then(|c| c.max_requests)
        .map(|max_requests| Breaker {
            max_requests,
            policy: format!("{}/{}", policy.metadata.namespace(), policy.metadata.name),
        });
    let outlier = spec.outlier_detection.as_ref().map(|o| Outlier {
        consecutive: o
            .consecutive_failures
            .unwrap_or(DEFAULT_CONSECUTIVE_FAILURES)
            .max(1),
        base: o
            .base_ejection_time
            .as_deref()
            .and_then(|d| duration::parse(d).ok())
            .unwrap_or(DEFAULT_BASE_EJECTION),
        max_percent: o
            .max_ejection_percent
            .unwrap_or(DEFAULT_MAX_EJECTION_PERCENT)
            .min(100),
    });
    Traffic {
        lb,
        breaker,
        outlier,
    }
}

/// What is wrong with a policy's fields, by path.
fn check(spec: &BackendTrafficPolicySpec) -> Vec<Finding> {
    let mut out = Vec::new();
    if spec.target_refs.is_empty() {
        out.push((
            "spec.targetRefs".into(),
            "needs at least one Service".into(),
        ));
    }
    for (i, t) in spec.target_refs.iter().enumerate() {
        if !t.group.is_empty() || t.kind != "Service" {
            out.push((
                format!("spec.targetRefs[{i}]"),
                "only core Services can be targeted".into(),
            ));
        }
    }
    if let Some(lb) = &spec.load_balancer {
        match lb.kind.as_str() {
            "PeakEWMA" | "RoundRobin" | "LeastRequest" => {}
            "ConsistentHash" => match &lb.consistent_hash {
                Some(h) if h.header.is_some() == h.cookie.is_some() => out.push((
                    "spec.loadBalancer.consistentHash".into(),
                    "set exactly one of header and cookie".into(),
                )),
                Some(h) => {
                    if let Some(header) = &h.header {
                        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                            out.push((
                                "spec.loadBalancer.consistentHash.header".into(),
                                format!("{header:?} is not a header name"),
                            ));
                        }
                    }
                }
                None => out.push((
                    "spec.loadBalancer.consistentHash".into(),
                    "ConsistentHash needs a header or a cookie".into(),
                )),
            },
            other => out.push((
                "spec.loadBalancer.type".into(),
                format!("{other:?} is not PeakEWMA, RoundRobin, LeastRequest or ConsistentHash"),
            )),
        }
    }
    if let Some(c) = &spec.circuit_breaker {
        if c.max_requests == Some(0) {
            out.push((
                "spec.circuitBreaker.maxRequests".into(),
                "must be at least 1".into(),
            ));
        }
    }
    if let Some(o) = &spec.outlier_detection {
        if let Some(Err(e)) = o.base_ejection_time.as_deref().map(duration::parse) {
            out.push(("spec.outlierDetection.baseEjectionTime".into(), e));
        }
        if o.max_ejection_percent.is_some_and(|p| p > 100) {
            out.push((
                "spec.outlierDetection.maxEjectionPercent".into(),
                "must be 0-100".into(),
            ));
        }
    }
    out
}

/// Every BackendTrafficPolicy's problems; a policy with any is not applied.
pub(crate) fn problems(docs: &[Document], out: &mut Vec<Problem>) {
    for doc in docs {
        if let Resource::BackendTrafficPolicy(p) = &doc.resource {
            for (path, msg) in check(&p.spec) {
                out.push(Problem::error(
                    &doc.source,
                    path,
                    format!("{msg}; the policy is not applied"),
                ));
            }
        }
    }
}
