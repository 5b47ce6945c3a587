//! Phase 6, response filters: hop-by-hop headers go, then the backend's
//! and the rule's response header modifiers apply, in that order.

use crate::answer::ResponseBody;
use crate::headers::strip_hop_by_hop;
use crate::upstream::PooledBody;
use http::Response;
use http_body_util::Either;
use strait_route::{Rule, WeightedBackend};

pub fn filters(
    backend: &WeightedBackend,
    rule: &Rule,
    mut response: Response<PooledBody>,
) -> Response<ResponseBody> {
    strip_hop_by_hop(response.headers_mut());
    if let Some(ops) = &backend.response_headers {
        ops.apply(response.headers_mut());
    }
    if let Some(ops) = &rule.response_headers {
        ops.apply(response.headers_mut());
    }
    response.map(Either::Left)
}
