//! The process's own measures, under the names every Prometheus client
//! library gives them (`process_*`, unprefixed, so the usual dashboards
//! and alerts find them), read from `/proc` at each scrape; and what it
//! serves: its build and its configuration's generation and age.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// `/proc/<pid>/stat` counts CPU time in these (`USER_HZ`, 100 on Linux
/// whatever the kernel's own tick).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

pub struct Process {
    registry: Registry,
    rss: Gauge,
    cpu: Counter<f64, AtomicU64>,
    fds: Gauge,
    started: Instant,
    config_generation: Gauge,
    config_age: FloatGauge,
    /// When the configuration serving now was accepted (ms since `started`).
    config_at_ms: AtomicU64,
}

impl Process {
    pub fn new(strait: &mut Registry) -> Self {
        let mut p = Process {
            registry: Registry::default(),
            rss: Gauge::default(),
            cpu: Counter::default(),
            fds: Gauge::default(),
            started: Instant::now(),
            config_generation: Gauge::default(),
            config_age: FloatGauge::default(),
            config_at_ms: AtomicU64::new(0),
        };
        let registry = &mut p.registry;
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            p.rss.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            p.cpu.clone(),
        );
        registry.register("process_open_fds", "Open file descriptors", p.fds.clone());
        let start: FloatGauge = Default::default();
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
        start.set(since_epoch.map_or(0.0, |d| d.as_secs_f64()));
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            start,
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        strait.register("build_info", "strait's version (always 1)", build);
        strait.register(
            "config_generation",
            "Configurations accepted since start (1: the first)",
            p.config_generation.clone(),
        );
        strait.register(
            "config_age_seconds",
            "Time since the configuration serving now was accepted",
            p.config_age.clone(),
        );
        p
    }

    /// A configuration was accepted: the `generation`th since start.
    pub fn configured(&self, generation: u64) {
        self.config_generation.set(generation as i64);
        let ms = self.started.elapsed().as_millis() as u64;
        self.config_at_ms.store(ms, Ordering::Relaxed);
    }

    /// Reads what the kernel says now, and encodes it.
    pub fn encode(&self, out: &mut String) {
        if let Some(kb) = status_kb("VmRSS:") {
            self.rss.set((kb * 1024) as i64);
        }
        if let Some(ticks) = cpu_ticks() {
            let seconds = ticks as f64 / TICKS_PER_SECOND;
            self.cpu.inc_by((seconds - self.cpu.get()).max(0.0));
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.fds.set(fds.count() as i64);
        }
        let now = self.started.elapsed().as_millis() as u64;
        let at = self.config_at_ms.load(Ordering::Relaxed);
        self.config_age.set(now.saturating_sub(at) as f64 / 1000.0);
        let _ = prometheus_client::encoding::text::encode_registry(out, &self.registry);
    }
}

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime, from `/proc/self/stat` (fields 14 and 15; the command
/// name before them may hold spaces, so counting starts after its `)`).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_reads_itself() {
        let mut strait = Registry::with_prefix("strait");
        let p = Process::new(&mut strait);
        p.configured(3);
        // Some CPU to count.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert_ne!(x, 1);
        let mut out = String::new();
        p.encode(&mut out);
        let value = |name: &str| -> f64 {
            out.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {out}"))
        };
        assert!(value("process_resident_memory_bytes ") > 1e6, "{out}");
        assert!(value("process_open_fds ") >= 3.0, "{out}");
        assert!(value("process_start_time_seconds ") > 1.7e9, "{out}");
        assert!(value("process_cpu_seconds_total ") > 0.0, "{out}");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &strait).expect("encoded");
        assert!(text.contains("strait_config_generation 3"), "{text}");
        assert!(text.contains("strait_build_info{version=\""), "{text}");
    }
}
