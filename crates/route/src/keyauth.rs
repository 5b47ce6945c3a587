//! A SecurityPolicy's API keys and basic-auth users, compiled from their
//! Secrets. Neither is kept as sent: an API key is looked up by its
//! SHA-256, so no comparison runs over the key itself, and a password is
//! checked against its htpasswd entry (bcrypt, or `{SHA}`, compared in
//! constant time).

use crate::authn::{Failure, TokenSource};
use base64::Engine;
use http::{HeaderMap, HeaderName};
use sha2::Digest;
use std::collections::HashMap;
use strait_config::auth::{ApiKeyAuth, BasicAuth};
use strait_config::core::LocalObjectRef;
use strait_config::{Document, Resource};
use subtle::ConstantTimeEq;

type Finding = (String, String);

/// The clients of an `apiKeyAuth`: each key's SHA-256 to its client's ID.
#[derive(Debug)]
pub struct ApiKeys {
    pub sources: Vec<TokenSource>,
    clients: HashMap<[u8; 32], String>,
    /// Set to the client's ID for the backend.
    pub client_header: Option<HeaderName>,
    pub forward: bool,
}

/// The users of a `basicAuth`, by name.
#[derive(Debug)]
pub struct BasicUsers {
    users: HashMap<String, Hash>,
    /// A bcrypt hash at the cost of the file's first, checked for unknown
    /// users.
    decoy: Option<String>,
    pub user_header: Option<HeaderName>,
    pub forward: bool,
}

#[derive(Debug)]
enum Hash {
    Bcrypt(String),
    Sha1([u8; 20]),
}

impl ApiKeys {
    /// The client whose key the request carries. Every place is read: two
    /// different keys are refused, as one the backend might read could be
    /// the one not checked.
    pub fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Result<&str, Failure> {
        let mut found = self.sources.iter().flat_map(|s| s.all(headers, query));
        let Some(key) = found.next() else {
            return Err(Failure::Missing);
        };
        if found.any(|other| other != key) {
            return Err(Failure::Invalid(
                "the request carries more than one key".into(),
            ));
        }
        let digest: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
        self.clients
            .get(&digest)
            .map(String::as_str)
            .ok_or_else(|| Failure::Invalid("the API key is not accepted".into()))
    }
}

impl BasicUsers {
    /// The `user:password` of `Authorization: Basic` (RFC 7617), decoded.
    pub fn credentials(&self, headers: &HeaderMap) -> Result<String, Failure> {
        let mut values = headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| {
                v.get(..6)
                    .filter(|p| p.eq_ignore_ascii_case("basic "))
                    .map(|_| &v[6..])
            });
        let Some(encoded) = values.next() else {
            return Err(Failure::Missing);
        };
        if values.next().is_some() {
            return Err(Failure::Invalid("more than one Authorization".into()));
        }
        let invalid = |why: &str| Failure::Invalid(why.into());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| invalid("the credentials are not base64"))?;
        String::from_utf8(decoded).map_err(|_| invalid("the credentials are not UTF-8"))
    }

    /// The user, once their password checks out. An unknown user costs a
    /// bcrypt check all the same, so that the time taken does not say
    /// which users exist.
    pub fn verify(&self, credentials: &str) -> Result<String, Failure> {
        let (user, password) = credentials
            .split_once(':')
            .ok_or_else(|| Failure::Invalid("the credentials have no ':'".into()))?;
        let good = match self.users.get(user) {
            Some(Hash::Bcrypt(h)) => bcrypt::verify(password, h).unwrap_or(false),
            Some(Hash::Sha1(d)) => {
                let got: [u8; 20] = sha1::Sha1::digest(password.as_bytes()).into();
                bool::from(got.ct_eq(d))
            }
            None => {
                if let Some(h) = &self.decoy {
                    let _ = bcrypt::verify(password, h);
                }
                false
            }
        };
        good.then(|| user.to_string())
            .ok_or_else(|| Failure::Invalid("the user or password is not accepted".into()))
    }

    /// Both steps.
    pub fn check(&self, headers: &HeaderMap) -> Result<String, Failure> {
        self.verify(&self.credentials(headers)?)
    }
}

pub(crate) fn api_keys(
    docs: &[Document],
    ns: &str,
    spec: &ApiKeyAuth,
    at: &str,
) -> Result<ApiKeys, Vec<Finding>> {
    let mut errors = Vec::new();
    let mut clients = HashMap::new();
    if spec.credential_refs.is_empty() {
        errors.push((format!("{at}.credentialRefs"), "no Secret".into()));
    }
    for (i, r) in spec.credential_refs.iter().enumerate() {
        let path = format!("{at}.credentialRefs[{i}]");
        match secret(docs, ns, r) {
            Ok(body) => {
                for id in body.data.keys().chain(body.string_data.keys()) {
                    match body.value(id) {
                        Ok(key) if !key.is_empty() => {
                            let digest: [u8; 32] = sha2::Sha256::digest(&key).into();
                            if let Some(other) = clients.insert(digest, id.clone()) {
                                errors.push((
                                    path.clone(),
                                    format!("clients {other:?} and {id:?} have the same key"),
                                ));
                            }
                        }
                        Ok(_) => {
                            errors.push((path.clone(), format!("client {id:?} has an empty key")))
                        }
                        Err(e) => errors.push((path.clone(), format!("client {id:?}: {e}"))),
                    }
                }
            }
            Err(e) => errors.push((path, e)),
        }
    }
    let mut sources = Vec::new();
    for (p, places) in spec.extract_from.iter().enumerate() {
        for (h, name) in places.headers.iter().enumerate() {
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(name) => sources.push(TokenSource::Header {
                    name,
                    prefix: String::new(),
                }),
                Err(_) => errors.push((
                    format!("{at}.extractFrom[{p}].headers[{h}]"),
                    format!("{name:?} is not a header name"),
                )),
            }
        }
        sources.extend(places.params.iter().cloned().map(TokenSource::Param));
        sources.extend(places.cookies.iter().cloned().map(TokenSource::Cookie));
    }
    if spec.extract_from.is_empty() {
        sources.push(TokenSource::Header {
            name: HeaderName::from_static("x-api-key"),
            prefix: String::new(),
        });
    }
    let client_header = header(
        spec.forward_client_id_header.as_deref(),
        &format!("{at}.forwardClientIDHeader"),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ApiKeys {
        sources,
        clients,
        client_header,
        forward: spec.forward,
    })
}

pub(crate) fn basic_users(
    docs: &[Document],
    ns: &str,
    spec: &BasicAuth,
    (at, warnings): (&str, &mut Vec<Finding>),
) -> Result<BasicUsers, Vec<Finding>> {
    let mut errors = Vec::new();
    let path = format!("{at}.users");
    let text = secret(docs, ns, &spec.users).and_then(|body| {
        let bytes = body.value(".htpasswd")?;
        String::from_utf8(bytes).map_err(|_| "the key .htpasswd is not UTF-8".to_string())
    });
    let mut users = HashMap::new();
    match text {
        Ok(text) => {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match entry(line) {
                    Ok((user, hash)) => {
                        users.insert(user.to_string(), hash);
                    }
                    Err(e) => warnings.push((
                        path.clone(),
                        format!(".htpasswd line {}: {e}; left out", n + 1),
                    )),
                }
            }
            if users.is_empty() {
                errors.push((path.clone(), "the .htpasswd has no usable user".into()));
            }
        }
        Err(e) => errors.push((path, e)),
    }
    let user_header = header(
        spec.forward_username_header.as_deref(),
        &format!("{at}.forwardUsernameHeader"),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    let decoy = users.values().find_map(|h| match h {
        Hash::Bcrypt(h) => {
            let cost = h.get(4..6)?.parse().ok()?;
            let made = bcrypt::hash_with_salt("decoy", cost, [0; 16]).ok()?;
            Some(made.format_for_version(bcrypt::Version::TwoB))
        }
        Hash::Sha1(_) => None,
    });
    Ok(BasicUsers {
        users,
        decoy,
        user_header,
        forward: spec.forward,
    })
}

/// One htpasswd line: `user:$2y$...` (bcrypt) or `user:{SHA}base64`.
fn entry(line: &str) -> Result<(&str, Hash), String> {
    let (user, hash) = line.split_once(':').ok_or("no ':'")?;
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "the {SHA} digest is not base64".to_string())?;
        let digest: [u8; 20] = bytes
            .try_into()
            .map_err(|_| "the {SHA} digest is not 20 bytes".to_string())?;
        return Ok((user, Hash::Sha1(digest)));
    }
    if ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .any(|p| hash.starts_with(p))
    {
        // `$2y$10$` and 53 characters of salt and digest.
        if hash.len() != 60 || hash.get(4..6).and_then(|c| c.parse::<u32>().ok()).is_none() {
            return Err("the bcrypt entry is not 60 characters with a cost".into());
        }
        return Ok((user, Hash::Bcrypt(hash.to_string())));
    }
    Err("strait reads bcrypt ($2y$) and {SHA} entries only".into())
}

fn header(name: Option<&str>, at: &str, errors: &mut Vec<Finding>) -> Option<HeaderName> {
    let name = name?;
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| errors.push((at.to_string(), format!("{name:?} is not a header name"))))
        .ok()
}

pub(crate) fn secret<'a>(
    docs: &'a [Document],
    ns: &str,
    r: &LocalObjectRef,
) -> Result<&'a strait_config::core::SecretBody, String> {
    if !(r.group.is_empty() && r.kind == "Secret") {
        return Err("a Secret ({group: \"\", kind: Secret, name})".into());
    }
    docs.iter()
        .find_map(|d| match &*d.resource {
            Resource::Secret(s) if s.metadata.namespace() == ns && s.metadata.name == r.name => {
                Some(&s.body)
            }
            _ => None,
        })
        .ok_or_else(|| format!("no Secret {ns}/{}", r.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(lines: &str) -> (Result<BasicUsers, Vec<Finding>>, Vec<Finding>) {
        let yaml = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: users, namespace: shop}}\nstringData:\n  .htpasswd: |\n{}",
            lines.lines().map(|l| format!("    {l}\n")).collect::<String>()
        );
        let set = strait_config::parse_text(std::path::Path::new("u.yaml"), &yaml);
        let spec = BasicAuth {
            users: LocalObjectRef {
                group: String::new(),
                kind: "Secret".into(),
                name: "users".into(),
            },
            ..Default::default()
        };
        let mut warnings = Vec::new();
        let compiled = basic_users(
            &set.documents,
            "shop",
            &spec,
            ("spec.basicAuth", &mut warnings),
        );
        (compiled, warnings)
    }

    fn authorization(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(
            http::header::AUTHORIZATION,
            format!("basic {pair}").parse().expect("value"),
        );
        h
    }

    #[test]
    fn htpasswd_entries_check_their_passwords() {
        let bcrypt = bcrypt::hash_with_salt("s3cret", 4, [1; 16]).expect("hash");
        let sha = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(b"pw"));
        let text = format!("# users\nann:{bcrypt}\nbo:{{SHA}}{sha}\ncy:plain\n\n");
        let (compiled, warnings) = users(&text);
        let users = compiled.expect("compiled");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].1.contains("line 4"), "{warnings:?}");
        assert_eq!(
            users.check(&authorization("ann", "s3cret")),
            Ok("ann".into())
        );
        assert_eq!(users.check(&authorization("bo", "pw")), Ok("bo".into()));
        for (user, password) in [("ann", "s3creT"), ("bo", "pW"), ("cy", "plain"), ("", "")] {
            assert!(matches!(
                users.check(&authorization(user, password)),
                Err(Failure::Invalid(_))
            ));
        }
        assert_eq!(users.check(&HeaderMap::new()), Err(Failure::Missing));
        let mut bearer = HeaderMap::new();
        bearer.insert(
            http::header::AUTHORIZATION,
            "Bearer x".parse().expect("value"),
        );
        assert_eq!(users.check(&bearer), Err(Failure::Missing));
    }

    #[test]
    fn two_clients_with_one_key_are_an_error_and_keys_find_their_client() {
        let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: keys, namespace: shop}\nstringData: {a: k1, b: k2, c: k1}\n";
        let set = strait_config::parse_text(std::path::Path::new("k.yaml"), yaml);
        let spec = ApiKeyAuth {
            credential_refs: vec![LocalObjectRef {
                group: String::new(),
                kind: "Secret".into(),
                name: "keys".into(),
            }],
            ..Default::default()
        };
        let errors = api_keys(&set.documents, "shop", &spec, "spec.apiKeyAuth").expect_err("dup");
        assert!(
            errors[0].1.contains("\"a\" and \"c\" have the same key"),
            "{errors:?}"
        );
        let yaml = yaml.replace("c: k1", "c: k3");
        let set = strait_config::parse_text(std::path::Path::new("k.yaml"), &yaml);
        let keys = api_keys(&set.documents, "shop", &spec, "spec.apiKeyAuth").expect("keys");
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "k3".parse().expect("value"));
        assert_eq!(keys.check(&h, None), Ok("c"));
        assert_eq!(
            keys.check(&h, Some("x-api-key=k1")),
            Ok("c"),
            "a header, not a parameter"
        );
    }

    #[test]
    fn a_file_without_usable_users_is_an_error() {
        let (compiled, warnings) = users("dan:$apr1$x$y\neve:$2y$10$short\n");
        let errors = compiled.expect_err("no user");
        assert_eq!(errors[0].0, "spec.basicAuth.users");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[1].1.contains("not 60 characters"), "{warnings:?}");
    }
}
