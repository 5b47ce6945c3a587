//! The access log: one line per request, JSON (the default) or text, to
//! stdout or a file, for every request or a sample. A request appends its
//! line to a bounded buffer that a thread of its own writes out once a
//! second (sooner in a burst), so a slow disk never holds a request up: a
//! line that finds the buffer full is dropped and counted
//! (`strait_access_log_dropped_total`).

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

pub use strait_route::telemetry::LogFormat as Format;
use strait_route::telemetry::Telemetry;

/// Where and how, as the flags say.
#[derive(Debug, Clone)]
pub struct Options {
    /// `-` for stdout, or a file appended to.
    pub target: String,
    pub format: Format,
    /// The share of requests logged, 0.0 to 1.0.
    pub sample: f64,
}

#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Lines>,
    format: Format,
    /// Out of a million requests.
    per_million: u32,
    dropped: Counter,
}

/// Lines written by requests and not yet by the writer, and where they go.
struct Lines {
    pending: Mutex<Vec<u8>>,
    /// Rung when `pending` passes [`WAKE_AT`], so a burst is written
    /// before the second is up.
    wake: Condvar,
    out: Mutex<Box<dyn Write + Send>>,
}

/// Bytes of lines waiting before new ones are dropped (some 8,000 lines).
pub const MAX_PENDING: usize = 4 << 20;
/// Bytes of lines waiting that wake the writer before its second is up.
const WAKE_AT: usize = 256 << 10;
/// Longest a line waits to be written (Envoy's access log flush interval
/// is the same second). Requests only append to a buffer: no request
/// wakes a thread or makes a system call for its line.
pub const FLUSH: Duration = Duration::from_secs(1);

thread_local! {
    /// A line being formatted, its allocation kept from one to the next.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl AccessLog {
    /// Opens the target and starts the writer; `dropped` counts lines
    /// there was no room for.
    pub fn open(options: &Options, dropped: Counter) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match options.target.as_str() {
            "-" => Box::new(std::io::stdout()),
            path => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let shared = Arc::new(Lines {
            pending: Mutex::new(Vec::with_capacity(64 << 10)),
            wake: Condvar::new(),
            out: Mutex::new(out),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || loop {
                writer.write_pending(FLUSH);
            })?;
        Ok(AccessLog {
            shared,
            format: options.format,
            per_million: (options.sample.clamp(0.0, 1.0) * 1e6) as u32,
            dropped,
        })
    }

    /// Whether this request is one of the sample: as a TelemetryPolicy
    /// says, else as the flags do.
    pub fn sampled(&self, policy: &Telemetry) -> bool {
        let n = policy.log_per_million.unwrap_or(self.per_million);
        n >= 1_000_000 || (n > 0 && fastrand::u32(..1_000_000) < n)
    }

    /// The form of a line: as a TelemetryPolicy says, else the flags.
    pub fn format(&self, policy: &Telemetry) -> Format {
        policy.log_format.unwrap_or(self.format)
    }

    pub fn write(&self, entry: &Entry<'_>, format: Format) {
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            match format {
                Format::Json => {
                    if serde_json::to_writer(&mut *line, entry).is_err() {
                        return;
                    }
                }
                Format::Text => entry.text(&mut line),
            }
            line.push(b'\n');
            if !self.shared.append(&line) {
                self.dropped.inc();
            }
        })
    }

    /// Writes what is waiting now (at shutdown).
    pub fn flush(&self) {
        self.shared.write_pending(Duration::ZERO);
    }
}

impl Lines {
    /// False when the line found no room.
    fn append(&self, line: &[u8]) -> bool {
        let Ok(mut pending) = self.pending.lock() else {
            return false;
        };
        if pending.len() + line.len() > MAX_PENDING {
            return false;
        }
        let before = pending.len();
        pending.extend_from_slice(line);
        if before < WAKE_AT && pending.len() >= WAKE_AT {
            self.wake.notify_one();
        }
        true
    }

    /// Waits up to `wait` for lines (less if a burst rings), then writes
    /// them all. The batch is taken with the output held, so batches are
    /// written in the order they were taken.
    fn write_pending(&self, wait: Duration) {
        if let Ok(pending) = self.pending.lock() {
            let _ = self
                .wake
                .wait_timeout_while(pending, wait, |p| p.len() < WAKE_AT);
        }
        // A lock is poisoned only by a panic while it was held, and no
        // code under these panics: carry on with what is there.
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let lines = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.is_empty() {
                return;
            }
            std::mem::replace(&mut *pending, Vec::with_capacity(64 << 10))
        };
        if out.write_all(&lines).and_then(|_| out.flush()).is_err() {
            tracing::warn!("the access log cannot be written; lines are being lost");
        }
    }
}

/// One request's line, or one TCP connection's (no method, path or
/// status; `authority` is its TLS server name, if it had one). Field names
/// follow Envoy's and OpenTelemetry's where they have one
/// (`docs/observability.md` lists them).
#[derive(Serialize)]
pub struct Entry<'a> {
    pub start_time: String,
    /// Request headers to the response's last byte, in milliseconds.
    pub duration_ms: f64,
    /// The first try's start to the response's headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    pub protocol: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// The response was cut off before its end (the client went away, or
    /// the backend failed in the middle of it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
    pub reporter: &'static str,
    pub listener: &'a str,
    pub route: &'a str,
    /// The rule's place in its route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_host: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: u32,
    pub source_workload: Qualified<'a>,
    pub source_principal: &'a str,
    pub destination_workload: Qualified<'a>,
    pub destination_service: Qualified<'a>,
    pub mtls: bool,
    pub client_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A workload or Service as `namespace/name`, or `unknown`.
pub struct Qualified<'a>(pub &'a crate::peer::Named);

impl std::fmt::Display for Qualified<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0.name {
            "unknown" => f.write_str("unknown"),
            name => write!(f, "{}/{name}", self.0.namespace),
        }
    }
}

impl Serialize for Qualified<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A duration in milliseconds, to the microsecond.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `ADDRESS:PORT`, written without the formatting machinery, which costs
/// more than the rest of a line (IPv6 takes the usual way).
pub fn address(addr: SocketAddr) -> String {
    let mut out = String::with_capacity(21);
    match addr {
        SocketAddr::V4(a) => {
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_number(&mut out, octet.into());
            }
            out.push(':');
            push_number(&mut out, a.port().into());
        }
        SocketAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
    out
}

fn push_number(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for d in &digits[i..] {
        out.push(char::from(*d));
    }
}

impl Entry<'_> {
    /// Envoy's default text format, with strait's fields after it:
    /// `[start] "METHOD PATH PROTOCOL" STATUS REASON BYTES_IN BYTES_OUT
    /// DURATION UPSTREAM_TIME "USER-AGENT" "REQUEST-ID" "AUTHORITY"
    /// "UPSTREAM" route=… rule=… source=… destination=… service=… retries=…`.
    fn text(&self, out: &mut Vec<u8>) {
        let dash = |s: Option<&str>| s.unwrap_or("-").replace('"', "\\\"");
        let upstream_ms = self.upstream_ms.map_or("-".into(), |ms| format!("{ms:.3}"));
        let _ = write!(
            out,
            "[{}] \"{} {} {}\" {} {} {} {} {:.3} {} \"{}\" \"{}\" \"{}\" \"{}\" route={} rule={} source={} principal={} destination={} service={} mtls={} retries={} client={}",
            self.start_time,
            self.method.unwrap_or("-"),
            self.path.unwrap_or("-").replace('"', "%22"),
            self.protocol,
            self.status,
            self.reason.unwrap_or("-"),
            self.bytes_received,
            self.bytes_sent,
            self.duration_ms,
            upstream_ms,
            dash(self.user_agent),
            dash(self.request_id),
            dash(self.authority),
            self.upstream_host.as_deref().unwrap_or("-"),
            self.route,
            self.rule.map_or("-".into(), |r| r.to_string()),
            self.source_workload,
            self.source_principal,
            self.destination_workload,
            self.destination_service,
            self.mtls,
            self.retries,
            self.client_address,
        );
        if self.incomplete {
            out.extend_from_slice(b" incomplete");
        }
    }
}

thread_local! {
    /// The last second written, and its text up to the fraction.
    static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// `2026-12-06T11:24:26.123Z`; the date and time of day are formatted
/// once a second.
pub fn rfc3339(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let (second, ms) = (since.as_secs(), since.subsec_millis());
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            let format =
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].");
            let text = time::OffsetDateTime::from(at).format(&format);
            *cached = (second, text.unwrap_or_default());
        }
        let mut out = String::with_capacity(24);
        out.push_str(&cached.1);
        out.push(char::from(b'0' + (ms / 100) as u8));
        out.push(char::from(b'0' + (ms / 10 % 10) as u8));
        out.push(char::from(b'0' + (ms % 10) as u8));
        out.push('Z');
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_written_as_rfc3339_utc() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_555_066_123);
        assert_eq!(rfc3339(at), "2026-12-06T11:04:26.123Z");
    }

    #[test]
    fn addresses_and_milliseconds_are_written_plainly() {
        for a in [
            "127.0.0.1:80",
            "10.200.0.1:65535",
            "0.0.0.0:0",
            "[::1]:8080",
        ] {
            let addr: SocketAddr = a.parse().expect("address");
            assert_eq!(address(addr), a);
        }
        assert_eq!(millis(Duration::from_nanos(598_808_999)), 598.809);
        assert_eq!(millis(Duration::from_micros(1)), 0.001);
        let at = std::time::UNIX_EPOCH + Duration::from_millis(1_796_555_066_007);
        assert_eq!(rfc3339(at), "2026-12-06T11:04:26.007Z");
    }

    fn entry(named: &crate::peer::Named) -> Entry<'_> {
        Entry {
            start_time: "2026-12-06T11:04:26.007Z".into(),
            duration_ms: 1.5,
            upstream_ms: Some(1.25),
            method: Some("GET"),
            authority: Some("shop.example.com"),
            path: Some("/a?\"b\""),
            protocol: "HTTP/1.1",
            status: 200,
            grpc_status: None,
            reason: None,
            bytes_received: 0,
            bytes_sent: 12,
            incomplete: false,
            reporter: "gateway",
            listener: "default/gw/http",
            route: "default/r",
            rule: Some(0),
            upstream_host: Some("127.0.0.1:9000".into()),
            retries: 0,
            source_workload: Qualified(named),
            source_principal: "unknown",
            destination_workload: Qualified(named),
            destination_service: Qualified(named),
            mtls: false,
            client_address: "127.0.0.1:5000".into(),
            user_agent: Some("curl/8"),
            request_id: None,
            trace_id: None,
        }
    }

    fn logged(format: Format, sample: f64, lines: usize) -> (String, u64) {
        let path = std::env::temp_dir().join(format!(
            "strait-access-{}-{}.log",
            std::process::id(),
            fastrand::u64(..)
        ));
        let options = Options {
            target: path.display().to_string(),
            format,
            sample,
        };
        let dropped = Counter::default();
        let log = AccessLog::open(&options, dropped.clone()).expect("opened");
        let named = crate::peer::Named::new("shop", "checkout");
        for _ in 0..lines {
            if log.sampled(&Telemetry::default()) {
                log.write(&entry(&named), format);
            }
        }
        log.flush();
        let text = std::fs::read_to_string(&path).expect("written");
        let _ = std::fs::remove_file(&path);
        (text, dropped.get())
    }

    #[test]
    fn lines_are_written_as_json_or_text() {
        let (json, dropped) = logged(Format::Json, 1.0, 3);
        assert_eq!(dropped, 0);
        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        assert_eq!(lines.len(), 3, "{json}");
        assert_eq!(lines[0]["path"], "/a?\"b\"");
        assert_eq!(lines[0]["destination_workload"], "shop/checkout");
        assert!(
            lines[0].get("retries").is_none(),
            "zero retries are left out"
        );
        let (text, _) = logged(Format::Text, 1.0, 1);
        assert!(
            text.starts_with("[2026-12-06T11:04:26.007Z] \"GET /a?%22b%22 HTTP/1.1\" 200 - 0 12 1.500 1.250 \"curl/8\" \"-\" \"shop.example.com\" \"127.0.0.1:9000\" route=default/r rule=0 source=shop/checkout"),
            "{text}"
        );
    }

    #[test]
    fn a_sample_logs_a_share_and_a_full_buffer_drops() {
        let (none, _) = logged(Format::Json, 0.0, 100);
        assert!(none.is_empty(), "{none}");
        let (some, _) = logged(Format::Json, 0.5, 2000);
        let n = some.lines().count();
        assert!((800..1200).contains(&n), "{n} of 2000 at 0.5");
        // More than the buffer holds, as fast as they come: what the
        // writer cannot keep up with is dropped and counted, never queued
        // without end nor lost unsaid.
        let line = some.lines().next().map_or(0, str::len) + 1;
        let many = MAX_PENDING / line + 1000;
        let (all, dropped) = logged(Format::Json, 1.0, many);
        assert_eq!(all.lines().count() as u64 + dropped, many as u64);
    }

    #[test]
    fn the_format_is_json_or_text() {
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        assert_eq!("text".parse::<Format>(), Ok(Format::Text));
        assert!("yaml".parse::<Format>().is_err());
    }
}
