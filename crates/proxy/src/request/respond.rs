//! Phase 6, response filters: hop-by-hop headers go (a meshed callee's
//! peer header read first), then the backend's and the rule's response
//! header modifiers apply, in that order.

use crate::answer::ResponseBody;
use crate::ctx::Seen;
use crate::headers::strip_hop_by_hop;
use crate::peer::{self, PEER};
use crate::upstream::PooledBody;
use http::Response;
use http_body_util::Either;
use strait_route::{Rule, WeightedBackend};

pub fn filters(
    backend: &WeightedBackend,
    rule: &Rule,
    mut response: Response<PooledBody>,
    seen: &mut Seen,
) -> Response<ResponseBody> {
    if seen.meshed {
        seen.destination = response.headers().get(PEER).and_then(peer::parse);
    }
    strip_hop_by_hop(response.headers_mut());
    if let Some(ops) = &backend.response_headers {
        ops.apply(response.headers_mut());
    }
    if let Some(ops) = &rule.response_headers {
        ops.apply(response.headers_mut());
    }
    response.map(Either::Left)
}
