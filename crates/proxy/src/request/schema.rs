//! Phase 2b, the API's schema: an ApiSchemaPolicy checks the request
//! against the API's OpenAPI document — its operation, its parameters,
//! then its JSON body, read (within the policy's bound) and kept for the
//! backend. After the authorization services' body is read (one read
//! serves both) and before they are asked: a malformed request spares
//! them.

use crate::answer::ProxyError;
use crate::ctx::{RequestCtx, Role};
use http::Request;
use hyper::body::Incoming;
use std::sync::Arc;
use strait_route::apischema::{check_json, ApiSchema, Found, Given, Invalid};
use strait_route::Matched;

/// The rule's (or its route's) ApiSchemaPolicy, else its listener's — at
/// a sidecar's inbound listener, its workload's.
pub fn attached<'a>(
    (matched, workload): (&'a Matched<'_>, Option<&'a Arc<ApiSchema>>),
    ctx: &RequestCtx,
) -> Option<&'a Arc<ApiSchema>> {
    match ctx.conn.role {
        Role::Inbound => workload,
        _ => matched
            .rule
            .apischema()
            .or(matched.listener.apischema.as_ref()),
    }
}

/// `req` as the policy's document describes it, or why not.
pub async fn check(
    policy: &ApiSchema,
    req: &mut Request<Incoming>,
    (limits, grpc): (&crate::limits::HttpLimits, bool),
) -> Result<(), ProxyError> {
    // A gRPC call is no operation of an HTTP API's document.
    if grpc {
        return Ok(());
    }
    let Some(api) = &policy.api else {
        // A policy that cannot be read fails closed, as a broken
        // SecurityPolicy does: nothing passes unchecked.
        let message =
            "the policy is not valid (see strait check); its targets answer 500 until it is fixed";
        let invalid = Invalid {
            status: 500,
            at: String::new(),
            message: message.into(),
        };
        return Err(refused(policy, invalid, None));
    };
    let refuse = |invalid| refused(policy, invalid, None);
    // Shared, not copied: the path's values borrow it while the body is read.
    let uri = req.uri().clone();
    let (op, values) = match api.find(req.method(), uri.path()) {
        Found::Operation(op, values) => (op, values),
        Found::NotNormal(why) => {
            let message = format!("the path is not in normal form: {why}");
            return Err(refuse(Invalid::bad(String::new(), message)));
        }
        _ if !policy.reject_unknown => return Ok(()),
        other => return Err(unknown(policy, req.method(), uri.path(), other)),
    };
    let given = Given {
        path: &values,
        query: uri.query(),
        headers: req.headers(),
    };
    let media = match super::filters::has_body(req) {
        true => Some(media_type(req.headers()).map_err(refuse)?),
        false => None,
    };
    let Some(schema) = op.check(&given, media).map_err(refuse)? else {
        return Ok(());
    };
    let data = super::filters::whole_body(req, policy.max_body, (limits, grpc))
        .await?
        .data
        .clone();
    match data.is_empty() {
        // A chunked body of no chunks is no body.
        true if op.body_required() => {
            Err(refuse(Invalid::bad("body".into(), "is required".into())))
        }
        true => Ok(()),
        false => check_json(schema, &data).map_err(refuse),
    }
}

/// The body's media type. RFC 9110 §8.3: a body without a type may be
/// taken as bytes.
fn media_type(headers: &http::HeaderMap) -> Result<&str, Invalid> {
    crate::headers::content_type(headers)
        .map(|t| t.unwrap_or("application/octet-stream"))
        .map_err(|why| Invalid::bad("header Content-Type".into(), why.into()))
}

fn refused(policy: &ApiSchema, invalid: Invalid, allow: Option<String>) -> ProxyError {
    ProxyError::RequestInvalid {
        policy: policy.policy.clone(),
        invalid: Box::new(invalid),
        allow: allow.map(String::into_boxed_str),
    }
}

/// The refusal of a request for an operation the document lacks: `404`,
/// or `405` with the methods its path has.
fn unknown(policy: &ApiSchema, method: &http::Method, path: &str, found: Found<'_>) -> ProxyError {
    let (status, message, allow) = match found {
        Found::NoMethod(allow) => {
            let message = format!("method {method} is not one of {allow}");
            (405, message, Some(allow))
        }
        _ => {
            let path = strait_route::apischema::cut(path.to_string());
            (
                404,
                format!("{method} {path} is not an operation of the API"),
                None,
            )
        }
    };
    let at = String::new();
    refused(
        policy,
        Invalid {
            status,
            at,
            message,
        },
        allow,
    )
}
