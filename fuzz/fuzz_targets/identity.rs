//! What a workload sends the CA and what a peer presents: a CSR signed by
//! the CA (first byte 0), a certificate read for its SPIFFE ID (1), a
//! SPIFFE ID as text (2), PEM read as certificates (3). A CSR the CA signs
//! must come back as a certificate naming exactly the caller, whatever
//! else the CSR asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;
use strait_identity::{Authority, SpiffeId};

fn authority() -> &'static Authority {
    static CA: OnceLock<Authority> = OnceLock::new();
    CA.get_or_init(|| {
        let (cert, key) = strait_identity::ca::new_root("td").expect("a root");
        Authority::from_pem("td", &cert, &key, None).expect("the root loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let caller = SpiffeId::new("td", "shop", "web");
            if let Ok(chain) = authority().sign(rest, &caller, Duration::from_secs(3600)) {
                let issued = SpiffeId::of_certificate(&chain[0]).expect("an issued SVID reads");
                assert_eq!(issued, caller);
            }
        }
        1 => {
            if let Ok(id) = SpiffeId::of_certificate(rest) {
                assert_eq!(SpiffeId::parse(&id.to_string()), Ok(id));
            }
        }
        2 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(id) = SpiffeId::parse(text) {
                    assert_eq!(id.to_string(), text, "an ID reads back as written");
                }
            }
        }
        _ => {
            let _ = strait_identity::ca::certs(rest, "fuzz");
        }
    }
});
