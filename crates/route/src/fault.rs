//! Fault injection: an HTTPRoute rule's `ExtensionRef` filter naming a
//! `FaultInjection` (policy.strait.dev/v1alpha1) in the route's namespace
//! delays and/or aborts a share of the rule's requests.

use std::time::Duration;
use strait_config::traffic::FaultInjectionSpec;
use strait_config::{duration, Object};

#[derive(Debug, Clone)]
pub struct Fault {
    /// `namespace/name` of the FaultInjection.
    pub name: String,
    /// The delay and the share of requests it applies to, per million.
    pub delay: Option<(Duration, u32)>,
    /// The status answered and the share of requests, per million.
    pub abort: Option<(u16, u32)>,
}

impl Fault {
    /// Whether a request is delayed (and how long) and whether it is
    /// aborted (and with what), for two rolls in `0..1_000_000`.
    pub fn decide(&self, roll_delay: u32, roll_abort: u32) -> (Option<Duration>, Option<u16>) {
        let delay = self
            .delay
            .filter(|(_, share)| roll_delay < *share)
            .map(|(d, _)| d);
        let abort = self
            .abort
            .filter(|(_, share)| roll_abort < *share)
            .map(|(s, _)| s);
        (delay, abort)
    }
}

fn per_million(percentage: Option<f64>) -> u32 {
    (percentage.unwrap_or(100.0).clamp(0.0, 100.0) * 10_000.0) as u32
}

/// A FaultInjection of namespace `ns`, or why it cannot apply.
pub(crate) fn compile(ns: &str, f: &Object<FaultInjectionSpec>) -> Result<Fault, String> {
    let name = &f.metadata.name;
    let delay = match &f.spec.delay {
        None => None,
        Some(d) => match duration::parse(&d.fixed_delay) {
            Ok(t) => Some((t, per_million(d.percentage))),
            Err(e) => return Err(format!("FaultInjection {ns}/{name}: delay.fixedDelay: {e}")),
        },
    };
    let abort = match &f.spec.abort {
        None => None,
        Some(a) if (200..=599).contains(&a.http_status) => {
            Some((a.http_status, per_million(a.percentage)))
        }
        Some(a) => {
            return Err(format!(
                "FaultInjection {ns}/{name}: abort.httpStatus {} is not 200-599",
                a.http_status
            ))
        }
    };
    Ok(Fault {
        name: format!("{ns}/{name}"),
        delay,
        abort,
    })
}
