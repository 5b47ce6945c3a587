//! Phase 7, telemetry: one record per request, in one place — whatever
//! phase answered it, strait or the backend.

use crate::answer::ResponseBody;
use crate::ctx::RequestCtx;
use crate::metrics::Metrics;
use http::Response;

pub fn record(metrics: &Metrics, ctx: &RequestCtx, response: &Response<ResponseBody>) {
    metrics.record(
        &ctx.listener,
        &ctx.route,
        response.status().as_u16(),
        ctx.start.elapsed().as_secs_f64(),
    );
}
