//! Tokens a test signs: an Ed25519 key, its JWK, and claims a provider
//! named `https://issuer.test` with audience `shop` accepts.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An Ed25519 key: its signing half and its JWK.
pub struct Signer {
    key: EncodingKey,
    pub public: Vec<u8>,
    kid: &'static str,
}

impl Signer {
    pub fn new(kid: &'static str) -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        Signer {
            key: EncodingKey::from_ed_der(&pair.serialize_der()),
            public: pair.public_key_raw().to_vec(),
            kid,
        }
    }

    pub fn jwk(&self) -> serde_json::Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(&self.public), "kid": self.kid, "use": "sig"})
    }

    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.into());
        jsonwebtoken::encode(&header, claims, &self.key).expect("signed")
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"iss": "https://issuer.test", "aud": "shop", "sub": "alice", "exp": now() + 600, "admin": true});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}
