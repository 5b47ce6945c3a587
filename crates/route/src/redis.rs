//! Where a RateLimitPolicy's global rules count: one Redis, a Redis
//! Cluster, or the primary Redis Sentinel names; over TLS (`rediss://`)
//! against the system's roots or the policy's own CAs. Checked here, so
//! a bad address is refused with its field path; connected by the proxy.

use std::sync::Arc;
use std::time::Duration;
use strait_config::ratelimit::RedisBackend;
use strait_config::Document;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Redis {
    pub servers: Servers,
    /// PEM CA certificates for TLS; `None`: the system's roots.
    pub ca: Option<Arc<[u8]>>,
    pub timeout: Duration,
    /// Refuse requests when Redis cannot answer.
    pub fail_closed: bool,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Servers {
    One(String),
    /// Some of the cluster's nodes: the others are learned from them.
    Cluster(Vec<String>),
    /// The sentinels, and the name they know the primary by.
    Sentinel {
        master: String,
        urls: Vec<String>,
    },
}

impl Redis {
    /// Whether the connections are TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        self.urls()
            .first()
            .is_some_and(|u| u.starts_with("rediss:"))
    }

    pub fn urls(&self) -> &[String] {
        match &self.servers {
            Servers::One(url) => std::slice::from_ref(url),
            Servers::Cluster(urls) | Servers::Sentinel { urls, .. } => urls,
        }
    }

    /// Where it counts, in words and without passwords: for `strait
    /// check`, `strait explain` and warnings.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self.urls().iter().map(|u| without_password(u)).collect();
        match &self.servers {
            Servers::One(_) => hosts.join(""),
            Servers::Cluster(_) => format!("Redis Cluster via {}", hosts.join(", ")),
            Servers::Sentinel { master, .. } => {
                format!("primary {master:?} of Sentinel {}", hosts.join(", "))
            }
        }
    }
}

/// The settings of `spec.global.redis`, or what is wrong with them as
/// `(field, error)`.
pub(crate) fn compile(
    r: &RedisBackend,
    docs: &[Document],
    ns: &str,
) -> Result<Redis, (String, String)> {
    let servers = servers(r)?;
    let mut redis = Redis {
        servers,
        ca: None,
        timeout: Duration::from_millis(50),
        fail_closed: false,
    };
    if !r.ca_certificate_refs.is_empty() {
        if !redis.tls() {
            let msg = "CAs are for TLS: the URLs are not rediss://";
            return Err(("caCertificateRefs".into(), msg.into()));
        }
        let field = "caCertificateRefs";
        let bundle =
            crate::tls::ca_bundle(docs, ns, &r.ca_certificate_refs, field, |_, n, _| n == ns)
                .map_err(|(_, msg)| (field.to_string(), msg))?;
        redis.ca = Some(bundle);
    }
    if let Some(t) = &r.timeout {
        let timeout = strait_config::duration::parse(t)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or((
                "timeout".to_string(),
                format!("{t:?} is not a duration over 0"),
            ))?;
        redis.timeout = timeout;
    }
    redis.fail_closed = match r.failure_mode.as_deref() {
        None | Some("Open") => false,
        Some("Closed") => true,
        Some(other) => {
            let msg = format!("{other:?} is not Open or Closed");
            return Err(("failureMode".into(), msg));
        }
    };
    Ok(redis)
}

fn servers(r: &RedisBackend) -> Result<Servers, (String, String)> {
    let given = [r.url.is_some(), !r.cluster.is_empty(), r.sentinel.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        let msg = "give exactly one of url, cluster and sentinel";
        return Err((String::new(), msg.into()));
    }
    if let Some(url) = &r.url {
        return check_url(url)
            .map(|u| Servers::One(u.to_string()))
            .map_err(|e| ("url".into(), e));
    }
    let (field, urls) = match &r.sentinel {
        Some(s) => ("sentinel.urls", &s.urls),
        None => ("cluster", &r.cluster),
    };
    if urls.is_empty() {
        return Err((field.into(), "no URL".into()));
    }
    let mut checked = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let url = check_url(url).map_err(|e| (format!("{field}[{i}]"), e))?;
        let db = url.split_once("://").and_then(|(_, r)| r.split_once('/'));
        if r.sentinel.is_none() && db.is_some_and(|(_, db)| !matches!(db, "" | "0")) {
            let msg = "a Redis Cluster has only db 0";
            return Err((format!("{field}[{i}]"), msg.into()));
        }
        if checked
            .first()
            .is_some_and(|first: &String| scheme(first) != scheme(url))
        {
            let msg = "mixes redis:// and rediss://: TLS is for all or none";
            return Err((format!("{field}[{i}]"), msg.into()));
        }
        checked.push(url.to_string());
    }
    Ok(match &r.sentinel {
        Some(s) if s.master_name.trim().is_empty() => {
            return Err(("sentinel.masterName".into(), "empty".into()))
        }
        Some(s) => Servers::Sentinel {
            master: s.master_name.trim().to_string(),
            urls: checked,
        },
        None => Servers::Cluster(checked),
    })
}

fn scheme(url: &str) -> &str {
    url.split_once("://").map_or("", |(s, _)| s)
}

/// `redis://` or `rediss://`, a host, a port or none, a db number or
/// none; nothing else (`#insecure`, which would turn certificate checks
/// off, in particular). Errors never show a password.
fn check_url(url: &str) -> Result<&str, String> {
    let url = url.trim();
    let shown = without_password(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{shown:?}: must start with redis:// or rediss://"));
    };
    if !matches!(scheme, "redis" | "rediss") {
        return Err(format!("{shown:?}: must start with redis:// or rediss://"));
    }
    // A password may hold `/`, `?` or `#`: the host starts after the last `@`.
    let after_user = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if after_user.contains(['#', '?']) {
        return Err(format!(
            "{shown}: no query or fragment (certificates are always checked)"
        ));
    }
    let (host_port, db) = after_user.split_once('/').unwrap_or((after_user, ""));
    let parsed = http::uri::Authority::try_from(host_port).ok();
    if host_port.is_empty() || parsed.as_ref().is_none_or(|a| a.host().is_empty()) {
        return Err(format!("{shown}: no host"));
    }
    if !db.is_empty() && db.parse::<u16>().is_err() {
        return Err(format!("{shown}: the db is a number"));
    }
    Ok(url)
}

/// `url` with what comes before its last `@` (a user and password) as
/// `user:***`, or `***` when there is no `:` to tell them apart.
fn without_password(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_string();
    };
    let (before, host) = url.split_at(at);
    let (prefix, userinfo) = match before.split_once("://") {
        Some((scheme, userinfo)) => (format!("{scheme}://"), userinfo),
        None => (String::new(), before),
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{prefix}{user}:***{host}"),
        None => format!("{prefix}***{host}"),
    }
}

impl std::fmt::Debug for Servers {
    /// Without passwords: settings end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls =
            |urls: &[String]| -> Vec<String> { urls.iter().map(|u| without_password(u)).collect() };
        match self {
            Servers::One(url) => f.debug_tuple("One").field(&without_password(url)).finish(),
            Servers::Cluster(all) => f.debug_tuple("Cluster").field(&urls(all)).finish(),
            Servers::Sentinel { master, urls: all } => f
                .debug_struct("Sentinel")
                .field("master", master)
                .field("urls", &urls(all))
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_config::ratelimit::RedisSentinel;

    fn backend(url: Option<&str>, cluster: &[&str]) -> RedisBackend {
        RedisBackend {
            url: url.map(String::from),
            cluster: cluster.iter().map(|s| s.to_string()).collect(),
            ..RedisBackend::default()
        }
    }

    #[test]
    fn addresses_are_checked_with_their_field() {
        let ok = compile(
            &backend(Some("redis://:pw@r.shop:6379/2"), &[]),
            &[],
            "shop",
        );
        assert_eq!(
            ok.map(|r| r.describe()),
            Ok("redis://:***@r.shop:6379/2".to_string())
        );
        for (b, field, says) in [
            (backend(None, &[]), "", "exactly one"),
            (
                backend(Some("redis://a"), &["redis://b"]),
                "",
                "exactly one",
            ),
            (backend(Some("http://a"), &[]), "url", "must start"),
            (backend(Some("rediss://a#insecure"), &[]), "url", "fragment"),
            (backend(Some("redis:///0"), &[]), "url", "no host"),
            (backend(Some("redis://a/x"), &[]), "url", "db"),
            (
                backend(None, &["redis://a", "rediss://b"]),
                "cluster[1]",
                "mixes",
            ),
            (backend(None, &["redis://a/1"]), "cluster[0]", "db 0"),
        ] {
            let got = compile(&b, &[], "shop");
            let Err((f, e)) = got else {
                panic!("{b:?} accepted");
            };
            assert_eq!(f, field, "{e}");
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn no_error_or_debug_output_shows_a_password() {
        for url in [
            "Redis://:s3cret@h",
            "redis:/:s3cret@h",
            "redis://:pa/s3cret@",
            "redis://u:s3cret@h?x=1",
            "redis://:s3cret@h/x",
        ] {
            let Err((_, e)) = compile(&backend(Some(url), &[]), &[], "shop") else {
                panic!("{url} accepted");
            };
            assert!(!e.contains("s3cret"), "{url}: {e}");
        }
        let ok = compile(
            &backend(Some("redis://u:pa/s3cret@h:1/0"), &[]),
            &[],
            "shop",
        );
        let r = ok.expect("a password may hold /");
        assert_eq!(r.describe(), "redis://u:***@h:1/0");
        assert!(!format!("{r:?}").contains("s3cret"), "{r:?}");
    }

    #[test]
    fn sentinel_and_cluster_are_described_without_passwords() {
        let mut b = backend(None, &[]);
        b.sentinel = Some(RedisSentinel {
            master_name: "mymaster".into(),
            urls: vec!["rediss://u:secret@s1:26379".into()],
        });
        let r = compile(&b, &[], "shop").expect("valid");
        assert!(r.tls());
        assert_eq!(
            r.describe(),
            "primary \"mymaster\" of Sentinel rediss://u:***@s1:26379"
        );
        b.sentinel = None;
        b.cluster = vec!["redis://a:1".into(), "redis://b:2".into()];
        b.ca_certificate_refs = vec![strait_config::gateway::CaCertificateRef {
            group: None,
            kind: None,
            name: "ca".into(),
            namespace: None,
        }];
        let err = compile(&b, &[], "shop").expect_err("CAs without TLS");
        assert_eq!(err.0, "caCertificateRefs");
    }
}
