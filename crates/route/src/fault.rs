//! Fault injection: an HTTPRoute rule's `ExtensionRef` filter naming a
//! `FaultInjection` (policy.strait.dev/v1alpha1) in the route's namespace
//! delays and/or aborts a share of the rule's requests. A filter whose
//! object cannot be found makes the rule answer 500, as the spec requires
//! of unresolved extension filters (never skipped).

use std::time::Duration;
use strait_config::httproute::HttpRouteFilter;
use strait_config::{duration, Document, Resource};

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

/// The rule's fault, if a filter names one: `Err` says why it cannot apply.
pub(crate) fn of_rule(
    docs: &[Document],
    ns: &str,
    filters: &[HttpRouteFilter],
) -> Option<Result<Fault, String>> {
    let name = filters
        .iter()
        .filter(|f| f.kind == "ExtensionRef")
        .find_map(|f| {
            f.extension_ref
                .as_ref()?
                .get("name")?
                .as_str()
                .map(str::to_string)
        })?;
    let found = docs.iter().find_map(|d| match &*d.resource {
        Resource::FaultInjection(f) if f.metadata.namespace() == ns && f.metadata.name == name => {
            Some(f)
        }
        _ => None,
    });
    let Some(f) = found else {
        return Some(Err(format!("FaultInjection {ns}/{name} not found")));
    };
    let delay = match &f.spec.delay {
        None => None,
        Some(d) => match duration::parse(&d.fixed_delay) {
            Ok(t) => Some((t, per_million(d.percentage))),
            Err(e) => {
                return Some(Err(format!(
                    "FaultInjection {ns}/{name}: delay.fixedDelay: {e}"
                )))
            }
        },
    };
    let abort = match &f.spec.abort {
        None => None,
        Some(a) if (200..=599).contains(&a.http_status) => {
            Some((a.http_status, per_million(a.percentage)))
        }
        Some(a) => {
            return Some(Err(format!(
                "FaultInjection {ns}/{name}: abort.httpStatus {} is not 200-599",
                a.http_status
            )))
        }
    };
    Some(Ok(Fault {
        name: format!("{ns}/{name}"),
        delay,
        abort,
    }))
}
