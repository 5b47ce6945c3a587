//! Why a downstream connection ended in an error, as a metric label: an
//! HTTP/2 client that abuses the protocol (rapid reset, CONTINUATION
//! floods, too many refused streams, flow-control violations) is cut off
//! by the `h2` crate with a GOAWAY, and an operator under attack needs to
//! see those apart from ordinary resets. Labels are a fixed set of names,
//! so an attacker cannot grow the series.

use crate::cause::find;
use std::error::Error;

/// The label for a connection that ended with `e`.
pub fn reason(e: &(dyn Error + 'static)) -> &'static str {
    if let Some(h2) = find::<h2::Error>(e) {
        return h2_reason(h2);
    }
    let Some(hyper) = find::<hyper::Error>(e) else {
        return io_or_other(e);
    };
    if hyper.is_timeout() {
        "header_timeout"
    } else if hyper.is_parse_too_large() {
        "http1_too_large"
    } else if hyper.is_parse() {
        "http1_malformed"
    } else if hyper.is_incomplete_message() {
        "incomplete_message"
    } else {
        io_or_other(e)
    }
}

/// Our GOAWAY names the abuse; anything else on an h2 connection is the
/// client's doing or the network's.
fn h2_reason(e: &h2::Error) -> &'static str {
    if e.is_io() {
        return "io";
    }
    if e.is_remote() {
        return "h2_client_goaway";
    }
    match e.reason() {
        Some(h2::Reason::ENHANCE_YOUR_CALM) => "h2_enhance_your_calm",
        Some(h2::Reason::PROTOCOL_ERROR) => "h2_protocol_error",
        Some(h2::Reason::FLOW_CONTROL_ERROR) => "h2_flow_control_error",
        Some(h2::Reason::FRAME_SIZE_ERROR) => "h2_frame_size_error",
        Some(h2::Reason::COMPRESSION_ERROR) => "h2_compression_error",
        Some(h2::Reason::SETTINGS_TIMEOUT) => "h2_settings_timeout",
        _ => "h2_other",
    }
}

fn io_or_other(e: &(dyn Error + 'static)) -> &'static str {
    match find::<std::io::Error>(e) {
        Some(_) => "io",
        None => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_is_io_and_a_plain_one_is_other() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(reason(&io), "io");
        let plain: Box<dyn Error + Send + Sync> = "odd".into();
        assert_eq!(reason(&*plain), "other");
    }

    #[test]
    fn our_goaway_names_its_reason() {
        let calm: h2::Error = h2::Reason::ENHANCE_YOUR_CALM.into();
        assert_eq!(reason(&calm), "h2_enhance_your_calm");
        let flow: h2::Error = h2::Reason::FLOW_CONTROL_ERROR.into();
        assert_eq!(reason(&flow), "h2_flow_control_error");
    }
}
