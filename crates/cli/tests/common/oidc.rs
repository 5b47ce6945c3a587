//! A real OpenID provider (node-oidc-provider from the npm registry,
//! installed here on first use) and a browser's part: a cookie jar, the
//! redirects followed, the provider's login and consent forms filled in.

use super::{send, Resp};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// The version the tests were written against.
const PACKAGE: &str = "oidc-provider@9.13.3";

pub struct OpenIdProvider {
    pub issuer: String,
    child: tokio::process::Child,
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Where the package is installed, once for every test.
fn installed() -> Result<PathBuf, String> {
    static ONCE: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("oidc-provider");
        if dir.join("node_modules/oidc-provider/package.json").exists() {
            return Ok(dir);
        }
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
            ])
            .arg(&dir)
            .arg(PACKAGE)
            .output()
            .map_err(|e| format!("npm: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "npm install {PACKAGE}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(dir)
    })
    .clone()
}

impl OpenIdProvider {
    /// A provider on `port` with client `shop` (secret
    /// `shop-client-secret`) sent back to `redirect`; access and ID tokens
    /// live `ttl` seconds. `None` (said why) when Node.js or the package
    /// cannot be had.
    pub async fn start(port: u16, redirect: &str, ttl: u64) -> Option<OpenIdProvider> {
        let dir = match installed() {
            Ok(dir) => dir,
            Err(why) => {
                eprintln!("SKIPPED: no OpenID provider: {why}");
                return None;
            }
        };
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs");
        let copy = dir.join("provider.mjs");
        std::fs::copy(&script, &copy).expect("copy the provider's script");
        let mut child = tokio::process::Command::new("node")
            .arg(&copy)
            .args([port.to_string(), redirect.to_string(), ttl.to_string()])
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("listening") {
                    return true;
                }
            }
            false
        });
        assert!(
            ready.await.unwrap_or(false),
            "the OpenID provider did not start"
        );
        // It writes notices as it goes: a closed pipe would end it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(OpenIdProvider {
            issuer: format!("http://127.0.0.1:{port}"),
            child,
        })
    }
}

/// What a browser keeps: cookies by name (all on 127.0.0.1, whatever the
/// port, as browsers do).
#[derive(Default)]
pub struct Browser {
    pub jar: BTreeMap<String, String>,
    /// Every URL visited, in order.
    pub visited: Vec<String>,
}

impl Browser {
    /// One request, `Host` from the URL; the answer's cookies kept.
    pub async fn fetch(&mut self, method: &str, url: &str, form: Option<String>) -> Resp {
        self.visited.push(format!("{method} {url}"));
        let uri: http::Uri = url.parse().expect("a URL");
        let mut b = Request::builder()
            .method(method)
            .uri(url)
            .header("host", uri.authority().expect("authority").as_str())
            .header("accept", "text/html");
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            b = b.header("cookie", cookies.join("; "));
        }
        let body = match form {
            Some(f) => {
                b = b.header("content-type", "application/x-www-form-urlencoded");
                Bytes::from(f)
            }
            None => Bytes::new(),
        };
        let r = send(b.body(Full::new(body)).expect("request"))
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        for c in r.headers.get_all("set-cookie") {
            let text = c.to_str().expect("cookie");
            let pair = text.split(';').next().unwrap_or("");
            let (k, v) = pair.split_once('=').expect("name=value");
            let gone = text.to_ascii_lowercase().contains("max-age=0")
                || text
                    .to_ascii_lowercase()
                    .contains("expires=thu, 01 jan 1970");
            match gone || v.is_empty() {
                true => self.jar.remove(k.trim()),
                false => self.jar.insert(k.trim().to_string(), v.to_string()),
            };
        }
        r
    }

    /// GET `url`, then each redirect, logging in as `user` at the
    /// provider's forms; the first answer that is neither.
    pub async fn browse(&mut self, url: &str, user: &str) -> Resp {
        let mut next = ("GET".to_string(), url.to_string(), None);
        for _ in 0..20 {
            let base: http::Uri = next.1.parse().expect("a URL");
            let r = self.fetch(&next.0, &next.1, next.2.take()).await;
            if let Some(location) = r.headers.get("location") {
                let location = location.to_str().expect("location");
                next = ("GET".into(), absolute(&base, location), None);
                continue;
            }
            match form_of(&r) {
                Some((action, mut fields)) => {
                    if fields.iter().any(|(k, v)| k == "prompt" && v == "login") {
                        fields.push(("login".into(), user.into()));
                        fields.push(("password".into(), "any".into()));
                    }
                    let body = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(fields)
                        .finish();
                    next = ("POST".into(), absolute(&base, &action), Some(body));
                }
                None => return r,
            }
        }
        panic!("too many redirects: {:#?}", self.visited);
    }
}

fn absolute(base: &http::Uri, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    format!("http://{}{location}", base.authority().expect("authority"))
}

/// The provider's form: its action and hidden fields.
fn form_of(r: &Resp) -> Option<(String, Vec<(String, String)>)> {
    let html = std::str::from_utf8(&r.body).ok()?;
    let start = html.find("<form")?;
    let form = &html[start..];
    let action = attribute(form, "action")?;
    let mut fields = Vec::new();
    for input in form.split("<input").skip(1) {
        let tag = &input[..input.find('>').unwrap_or(input.len())];
        if tag.contains("type=\"hidden\"") {
            let (Some(k), Some(v)) = (attribute(tag, "name"), attribute(tag, "value")) else {
                continue;
            };
            fields.push((k, v));
        }
    }
    Some((action, fields))
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let from = tag.find(&key)? + key.len();
    let len = tag[from..].find('"')?;
    Some(tag[from..from + len].replace("&amp;", "&"))
}
