//! `BackendTrafficPolicy` → a cluster's [`Traffic`] settings; problems
//! with their file and field path. The policy in the Service's namespace
//! naming the Service (or its port by `sectionName`) applies; one naming
//! the port wins over one for the whole Service, then the oldest.

use crate::balance::{Breaker, HashKey, LbKind, Outlier, Traffic};
use crate::balance::{
    DEFAULT_BASE_EJECTION, DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_MAX_EJECTION_PERCENT,
    DEFAULT_MAX_PENDING,
};
use crate::retry::BudgetSettings;
use strait_config::traffic::{
    BackendTrafficPolicySpec, CircuitBreaker, LoadBalancer, OutlierDetection, RetryBudget,
};
use strait_config::{duration, Document, Object, Problem, Resource};

type Finding = (String, String);

/// The settings for Service `ns/name` port `port_name`.
pub(crate) fn for_service(
    policies: &[&Document],
    ns: &str,
    name: &str,
    port_name: Option<&str>,
) -> Traffic {
    let policies = policies.iter().filter_map(|d| match &*d.resource {
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
    let breaker = spec.circuit_breaker.as_ref().map(|c| Breaker {
        max_requests: c.max_requests,
        max_connections: c.max_connections,
        max_pending: c.max_pending_requests.unwrap_or(DEFAULT_MAX_PENDING),
        policy: format!("{}/{}", policy.metadata.namespace(), policy.metadata.name),
    });
    let defaults = BudgetSettings::default();
    let budget = spec.retry_budget.as_ref().map(|b| BudgetSettings {
        ratio: b.percent.map_or(defaults.ratio, |p| f64::from(p) / 100.0),
        min_per_second: b
            .min_retries_per_second
            .map_or(defaults.min_per_second, u64::from),
        window: b
            .interval
            .as_deref()
            .and_then(|d| duration::parse(d).ok())
            .unwrap_or(defaults.window),
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
        budget: budget.unwrap_or(defaults),
    }
}

/// What is wrong with a policy's fields, by path.
fn check(spec: &BackendTrafficPolicySpec) -> Vec<Finding> {
    let mut out = Vec::new();
    check_targets(spec, &mut out);
    if let Some(lb) = &spec.load_balancer {
        check_load_balancer(lb, &mut out);
    }
    if let Some(c) = &spec.circuit_breaker {
        check_breaker(c, &mut out);
    }
    if let Some(b) = &spec.retry_budget {
        check_budget(b, &mut out);
    }
    if let Some(o) = &spec.outlier_detection {
        check_outlier(o, &mut out);
    }
    out
}

fn check_targets(spec: &BackendTrafficPolicySpec, out: &mut Vec<Finding>) {
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
}

fn check_load_balancer(lb: &LoadBalancer, out: &mut Vec<Finding>) {
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

fn check_breaker(c: &CircuitBreaker, out: &mut Vec<Finding>) {
    for (field, value) in [
        ("maxRequests", c.max_requests),
        ("maxConnections", c.max_connections),
    ] {
        if value == Some(0) {
            out.push((
                format!("spec.circuitBreaker.{field}"),
                "must be at least 1".into(),
            ));
        }
    }
    if c.max_pending_requests.is_some() && c.max_connections.is_none() {
        out.push((
            "spec.circuitBreaker.maxPendingRequests".into(),
            "only applies with maxConnections".into(),
        ));
    }
}

fn check_budget(b: &RetryBudget, out: &mut Vec<Finding>) {
    if b.percent.is_some_and(|p| p > 100) {
        out.push(("spec.retryBudget.percent".into(), "must be 0-100".into()));
    }
    match b.interval.as_deref().map(duration::parse) {
        Some(Err(e)) => out.push(("spec.retryBudget.interval".into(), e)),
        Some(Ok(d)) if d < std::time::Duration::from_secs(1) => out.push((
            "spec.retryBudget.interval".into(),
            "must be at least 1s".into(),
        )),
        _ => {}
    }
}

fn check_outlier(o: &OutlierDetection, out: &mut Vec<Finding>) {
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

/// Every BackendTrafficPolicy's problems; a policy with any is not applied.
pub(crate) fn problems(docs: &[Document], out: &mut Vec<Problem>) {
    for doc in docs {
        if let Resource::BackendTrafficPolicy(p) = &*doc.resource {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> BackendTrafficPolicySpec {
        let text = format!("targetRefs: [{{group: \"\", kind: Service, name: s}}]\n{yaml}");
        serde_saphyr::from_str(&text).expect("spec parses")
    }

    #[test]
    fn breaker_and_budget_fields_are_checked_by_path() {
        let paths = |yaml: &str| -> Vec<String> {
            check(&spec(yaml)).into_iter().map(|(p, _)| p).collect()
        };
        assert_eq!(
            paths("circuitBreaker: {maxConnections: 0, maxRequests: 0}"),
            [
                "spec.circuitBreaker.maxRequests",
                "spec.circuitBreaker.maxConnections"
            ]
        );
        assert_eq!(
            paths("circuitBreaker: {maxPendingRequests: 3}"),
            ["spec.circuitBreaker.maxPendingRequests"]
        );
        assert_eq!(
            paths("retryBudget: {percent: 101, interval: 10ms}"),
            ["spec.retryBudget.percent", "spec.retryBudget.interval"]
        );
        assert!(
            paths("retryBudget: {percent: 50, minRetriesPerSecond: 0, interval: 1m}").is_empty()
        );
    }
}
