//! The access log: one line per request, JSON (the default) or text, to
//! stdout or a file, for every request or a sample. Lines are written by a
//! thread of their own through a bounded queue, so a slow disk never holds
//! a request up: a line that finds the queue full is dropped and counted
//! (`strait_access_log_dropped_total`).

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Lines waiting for the writer before new ones are dropped.
pub const QUEUE: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Text,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Format::Json),
            "text" => Ok(Format::Text),
            other => Err(format!("{other:?}: the access log format is json or text")),
        }
    }
}

/// Where and how, as the flags say.
#[derive(Debug, Clone)]
pub struct Options {
    /// `-` for stdout, or a file appended to.
    pub target: String,
    pub format: Format,
    /// The share of requests logged, 0.0 to 1.0.
    pub sample: f64,
}

pub struct AccessLog {
    queue: SyncSender<Vec<u8>>,
    format: Format,
    /// Out of a million requests.
    per_million: u32,
    dropped: Counter,
}

impl AccessLog {
    /// Opens the target and starts the writer; `dropped` counts lines the
    /// queue had no room for.
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
        let (queue, lines) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(lines, out))?;
        Ok(AccessLog {
            queue,
            format: options.format,
            per_million: (options.sample.clamp(0.0, 1.0) * 1e6) as u32,
            dropped,
        })
    }

    /// Whether this request is one of the sample.
    pub fn sampled(&self) -> bool {
        self.per_million >= 1_000_000 || fastrand::u32(..1_000_000) < self.per_million
    }

    pub fn write(&self, entry: &Entry<'_>) {
        let mut line = Vec::with_capacity(512);
        match self.format {
            Format::Json => {
                if serde_json::to_writer(&mut line, entry).is_err() {
                    return;
                }
            }
            Format::Text => entry.text(&mut line),
        }
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = self.queue.try_send(line) {
            self.dropped.inc();
        }
    }
}

/// Writes what comes, flushing whenever the queue runs dry.
fn write_lines(lines: Receiver<Vec<u8>>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = lines.recv() {
        let mut ok = out.write_all(&line).is_ok();
        while let Ok(more) = lines.try_recv() {
            ok &= out.write_all(&more).is_ok();
        }
        if !(ok && out.flush().is_ok()) {
            tracing::warn!("the access log cannot be written; lines are being lost");
        }
    }
}

/// One request's line. Field names follow Envoy's and OpenTelemetry's
/// where they have one (`docs/observability.md` lists them).
#[derive(Serialize)]
pub struct Entry<'a> {
    pub start_time: String,
    /// Request headers to the response's last byte, in milliseconds.
    pub duration_ms: f64,
    /// The first try's start to the response's headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    pub method: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_host: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: u32,
    pub source_workload: String,
    pub source_principal: &'a str,
    pub destination_workload: String,
    pub destination_service: String,
    pub mtls: bool,
    pub client_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<&'a str>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Entry<'_> {
    /// Envoy's default text format, with strait's fields after it:
    /// `[start] "METHOD PATH PROTOCOL" STATUS REASON BYTES_IN BYTES_OUT
    /// DURATION UPSTREAM_TIME "USER-AGENT" "REQUEST-ID" "AUTHORITY"
    /// "UPSTREAM" route=… source=… destination=… service=… retries=…`.
    fn text(&self, out: &mut Vec<u8>) {
        let dash = |s: Option<&str>| s.unwrap_or("-").replace('"', "\\\"");
        let upstream_ms = self.upstream_ms.map_or("-".into(), |ms| format!("{ms:.3}"));
        let _ = write!(
            out,
            "[{}] \"{} {} {}\" {} {} {} {} {:.3} {} \"{}\" \"{}\" \"{}\" \"{}\" route={} source={} principal={} destination={} service={} mtls={} retries={} client={}",
            self.start_time,
            self.method,
            self.path.replace('"', "%22"),
            self.protocol,
            self.status,
            self.reason.unwrap_or("-"),
            self.bytes_received,
            self.bytes_sent,
            self.duration_ms,
            upstream_ms,
            dash(self.user_agent),
            dash(self.request_id),
            dash(Some(self.authority)),
            self.upstream_host.as_deref().unwrap_or("-"),
            self.route,
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

/// `2026-12-06T11:24:26.123Z`.
pub fn rfc3339(at: std::time::SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&format).unwrap_or_default()
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
    fn the_format_is_json_or_text() {
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        assert_eq!("text".parse::<Format>(), Ok(Format::Text));
        assert!("yaml".parse::<Format>().is_err());
    }
}
