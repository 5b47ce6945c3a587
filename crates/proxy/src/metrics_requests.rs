//! The golden metrics of HTTP and gRPC requests: how many, how long, how
//! big, by who called whom. Labels map one to one onto Istio's standard
//! metrics (`docs/metrics.md` gives the mapping), so dashboards written
//! for those adapt by renaming.
//!
//! Cardinality is bounded: no label holds a path or a client address, and
//! past [`MAX_SERIES`] label sets a new one is counted under `overflow`.

use crate::peer::Named;
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Label sets one registry takes before new ones go to `overflow`.
pub const MAX_SERIES: usize = 10_000;

/// Who reports a request: a gateway, the caller's sidecar (`source`) or
/// the callee's (`destination`), as Istio's `reporter` label.
pub type Reporter = &'static str;

/// The labels of one request's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RequestLabels {
    pub reporter: Reporter,
    pub listener: Arc<str>,
    pub route: Arc<str>,
    /// The rule's place in its route.
    pub rule: Option<u16>,
    pub source: Arc<Named>,
    /// The caller's SPIFFE ID, `unknown` when it proved none.
    pub source_principal: Arc<str>,
    pub destination: Arc<Named>,
    pub service: Arc<Named>,
    pub code: u16,
    /// `grpc-status` of a gRPC response (trailers or headers).
    pub grpc_status: Option<u8>,
    /// `x-strait-reason` of strait's own answers.
    pub reason: Option<&'static str>,
    pub mtls: bool,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let grpc = self.grpc_status.map(|s| s.to_string()).unwrap_or_default();
        let rule = self.rule.map(|r| r.to_string()).unwrap_or_default();
        let [a, b, c, d] = [
            ("reporter", self.reporter),
            ("listener", &*self.listener),
            ("route", &*self.route),
            ("rule", rule.as_str()),
        ];
        let parties = Parties {
            source: &self.source,
            source_principal: &self.source_principal,
            destination: &self.destination,
            service: &self.service,
        };
        let rest = [
            ("grpc_response_status", grpc.as_str()),
            ("reason", self.reason.unwrap_or("")),
            ("connection_security_policy", security(self.mtls)),
        ];
        encode_pairs(encoder, &[a, b, c, d])?;
        parties.encode(encoder)?;
        encode_pairs(encoder, &rest)?;
        ("code", self.code).encode(encoder.encode_label())
    }
}

/// The caller and the callee, as request and TCP metrics both label them.
pub struct Parties<'a> {
    pub source: &'a Named,
    pub source_principal: &'a str,
    pub destination: &'a Named,
    pub service: &'a Named,
}

impl Parties<'_> {
    pub fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        encode_pairs(
            encoder,
            &[
                ("source_workload", &self.source.name),
                ("source_workload_namespace", &self.source.namespace),
                ("source_principal", self.source_principal),
                ("destination_workload", &self.destination.name),
                (
                    "destination_workload_namespace",
                    &self.destination.namespace,
                ),
                ("destination_service_name", &self.service.name),
                ("destination_service_namespace", &self.service.namespace),
            ],
        )
    }
}

pub fn encode_pairs(
    encoder: &mut LabelSetEncoder,
    pairs: &[(&str, &str)],
) -> Result<(), std::fmt::Error> {
    for pair in pairs {
        pair.encode(encoder.encode_label())?;
    }
    Ok(())
}

/// Istio's `connection_security_policy` value.
pub fn security(mtls: bool) -> &'static str {
    if mtls {
        "mutual_tls"
    } else {
        "none"
    }
}

impl RequestLabels {
    /// What a label set past the limit is counted as.
    fn overflow(&self) -> RequestLabels {
        static OVERFLOW: OnceLock<(Arc<str>, Arc<Named>)> = OnceLock::new();
        let (text, named) =
            OVERFLOW.get_or_init(|| (Arc::from("overflow"), Named::new("overflow", "overflow")));
        RequestLabels {
            listener: text.clone(),
            route: text.clone(),
            source: named.clone(),
            source_principal: text.clone(),
            destination: named.clone(),
            service: named.clone(),
            ..self.clone()
        }
    }

    /// The series' identity as this thread's cache sees it: the labels'
    /// addresses, which the cached labels keep from being reused.
    fn key(&self, owner: usize) -> Key {
        let p = |a: &Arc<str>| Arc::as_ptr(a) as *const u8 as usize;
        let n = |a: &Arc<Named>| Arc::as_ptr(a) as usize;
        Key {
            owner,
            pointers: [
                self.reporter.as_ptr() as usize,
                p(&self.listener),
                p(&self.route),
                n(&self.source),
                p(&self.source_principal),
                n(&self.destination),
                n(&self.service),
                self.reason.map_or(0, |r| r.as_ptr() as usize),
            ],
            code: self.code,
            rule: self.rule,
            grpc_status: self.grpc_status,
            mtls: self.mtls,
        }
    }
}

#[derive(PartialEq, Eq, Hash)]
struct Key {
    owner: usize,
    pointers: [usize; 8],
    code: u16,
    rule: Option<u16>,
    grpc_status: Option<u8>,
    mtls: bool,
}

/// One request's measures.
pub struct Measured {
    pub seconds: f64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

#[derive(Clone)]
struct Handles {
    /// Kept so that the addresses in the key stay theirs.
    _labels: RequestLabels,
    total: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

/// Series handles each thread keeps at hand (see [`Requests::record`]).
const THREAD_CACHE: usize = 1024;

thread_local! {
    static CACHE: RefCell<foldhash::HashMap<Key, Handles>> = RefCell::new(Default::default());
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

type Histograms = Family<RequestLabels, Histogram, fn() -> Histogram>;

pub struct Requests {
    /// Tells this registry's cached handles from another's in the same thread.
    id: usize,
    total: Family<RequestLabels, Counter>,
    duration: Histograms,
    request_bytes: Histograms,
    response_bytes: Histograms,
    /// Label sets taken so far, up to [`MAX_SERIES`].
    known: Mutex<HashSet<RequestLabels>>,
}

fn seconds() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn bytes() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1.0, 10.0, 9,
    ))
}

impl Requests {
    pub fn register(registry: &mut Registry) -> Self {
        let r = Requests {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            total: Family::default(),
            duration: Family::new_with_constructor(seconds),
            request_bytes: Family::new_with_constructor(bytes),
            response_bytes: Family::new_with_constructor(bytes),
            known: Mutex::default(),
        };
        registry.register(
            "requests",
            "HTTP and gRPC requests answered, by reporter, caller, callee, route and status (docs/metrics.md)",
            r.total.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request's headers to the response's last byte",
            r.duration.clone(),
        );
        registry.register(
            "request_bytes",
            "Request body sizes (the declared Content-Length)",
            r.request_bytes.clone(),
        );
        registry.register(
            "response_bytes",
            "Response body sizes, as sent",
            r.response_bytes.clone(),
        );
        r
    }

    /// Counts one request. Finding a series (hashing eleven labels under a
    /// lock) is paid once per thread and series: handles are then found by
    /// the labels' addresses in a per-thread map.
    pub fn record(&self, labels: &RequestLabels, m: &Measured) {
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let key = labels.key(self.id);
            let handles = match cache.get(&key) {
                Some(h) => h,
                None => {
                    if cache.len() >= THREAD_CACHE {
                        cache.clear();
                    }
                    let handles = self.handles(labels.clone());
                    cache.entry(key).or_insert(handles)
                }
            };
            handles.total.inc();
            handles.duration.observe(m.seconds);
            handles.request_bytes.observe(m.request_bytes as f64);
            handles.response_bytes.observe(m.response_bytes as f64);
        });
    }

    fn handles(&self, labels: RequestLabels) -> Handles {
        let counted = self.admit(&labels);
        let series = if counted {
            labels.clone()
        } else {
            labels.overflow()
        };
        Handles {
            total: self.total.get_or_create_owned(&series),
            duration: self.duration.get_or_create_owned(&series),
            request_bytes: self.request_bytes.get_or_create_owned(&series),
            response_bytes: self.response_bytes.get_or_create_owned(&series),
            _labels: labels,
        }
    }

    /// Whether `labels` has, or may have, a series of its own.
    fn admit(&self, labels: &RequestLabels) -> bool {
        let Ok(mut known) = self.known.lock() else {
            return false;
        };
        if known.contains(labels) {
            return true;
        }
        if known.len() >= MAX_SERIES {
            return false;
        }
        if known.len() + 1 == MAX_SERIES {
            tracing::warn!(
                limit = MAX_SERIES,
                "request metrics reached their label-set limit; new label sets are counted under \"overflow\""
            );
        }
        known.insert(labels.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(route: &str) -> RequestLabels {
        RequestLabels {
            reporter: "gateway",
            listener: Arc::from("default/gw/http"),
            route: Arc::from(route),
            rule: Some(1),
            source: Named::unknown(),
            source_principal: Arc::from("unknown"),
            destination: Named::new("shop", "payment-v1"),
            service: Named::new("shop", "payment"),
            code: 200,
            grpc_status: Some(0),
            reason: None,
            mtls: true,
        }
    }

    fn measured() -> Measured {
        Measured {
            seconds: 0.001,
            request_bytes: 0,
            response_bytes: 1024,
        }
    }

    #[test]
    fn a_request_is_counted_under_its_labels() {
        let mut registry = Registry::with_prefix("strait");
        let requests = Requests::register(&mut registry);
        requests.record(&labels("shop/pay"), &measured());
        requests.record(&labels("shop/pay"), &measured());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
        let line = text
            .lines()
            .find(|l| l.starts_with("strait_requests_total{"))
            .expect("a series");
        assert_eq!(
            line,
            "strait_requests_total{reporter=\"gateway\",listener=\"default/gw/http\",route=\"shop/pay\",rule=\"1\",\
             source_workload=\"unknown\",source_workload_namespace=\"unknown\",source_principal=\"unknown\",\
             destination_workload=\"payment-v1\",destination_workload_namespace=\"shop\",\
             destination_service_name=\"payment\",destination_service_namespace=\"shop\",\
             grpc_response_status=\"0\",reason=\"\",connection_security_policy=\"mutual_tls\",code=\"200\"} 2"
        );
        let bucket = |le: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("strait_response_bytes_bucket{{le=\"{le}\"")))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(bucket("1000.0").as_deref(), Some("0"), "{text}");
        assert_eq!(bucket("10000.0").as_deref(), Some("2"), "{text}");
    }

    #[test]
    fn label_sets_past_the_limit_are_counted_as_overflow() {
        let mut registry = Registry::with_prefix("strait");
        let requests = Requests::register(&mut registry);
        for i in 0..MAX_SERIES + 5 {
            requests.record(&labels(&format!("shop/r{i}")), &measured());
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
        let totals: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("strait_requests_total{"))
            .collect();
        assert_eq!(
            totals.len(),
            MAX_SERIES + 1,
            "the limit and one overflow series"
        );
        let overflow = totals
            .iter()
            .find(|l| l.contains("route=\"overflow\""))
            .expect("an overflow series");
        assert!(overflow.ends_with("} 5"), "{overflow}");
    }
}
