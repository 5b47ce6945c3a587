//! Phase 3b, bodies transformed: a rule's BodyTransform reads the
//! client's body whole (within its bound; one read serves the checks
//! before it too), converts and edits it before the filters, and does the
//! same to the backend's answer before the client gets it.

use crate::answer::{ProxyError, ResponseBody};
use crate::client_body::BodyHead;
use crate::ctx::Asked;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use strait_route::transform::{BodyTransform, RequestFacts, Side};

/// What the answer's templates may say of the client's request, kept
/// before the request is sent on; only when the rule transforms answers.
/// The backend is then asked for an answer with no content coding, to be
/// read.
pub fn asked<B>(t: &BodyTransform, req: &mut Request<B>) -> Option<Box<Asked>> {
    let side = t.response.as_ref()?;
    req.headers_mut().remove(http::header::ACCEPT_ENCODING);
    // Only the headers the answer's templates name.
    let mut headers = HeaderMap::new();
    for name in side.headers_named() {
        for value in req.headers().get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    Some(Box::new(Asked {
        method: req.method().clone(),
        path: req.uri().path().to_string(),
        headers,
    }))
}

fn view(asked: &Asked) -> RequestFacts<'_> {
    RequestFacts {
        method: asked.method.as_str(),
        path: &asked.path,
        headers: &asked.headers,
    }
}

fn untransformed(t: &BodyTransform, status: StatusCode, why: String) -> ProxyError {
    ProxyError::Untransformed {
        by: t.name.clone(),
        status,
        why,
    }
}

/// The client's body transformed, in the request for its backend with
/// its new length and type. A request with no body is left alone; gRPC
/// is not JSON or XML.
pub async fn request(
    t: &BodyTransform,
    req: &mut Request<Incoming>,
    (limits, grpc): (&crate::limits::HttpLimits, bool),
) -> Result<(), ProxyError> {
    let Some(side) = t.request.as_ref().filter(|_| !grpc) else {
        return Ok(());
    };
    if !super::filters::has_body(req) {
        return Ok(());
    }
    let given = type_of(req.headers());
    if !given.is_some_and(|ct| side.from.is(ct)) {
        let why = format!(
            "the request's body must be {} (its Content-Type is {})",
            side.from.name(),
            given.unwrap_or("missing")
        );
        return Err(untransformed(t, StatusCode::UNSUPPORTED_MEDIA_TYPE, why));
    }
    let data = super::filters::whole_body(req, t.max_body, (limits, grpc))
        .await?
        .data
        .clone();
    let facts = RequestFacts {
        method: req.method().as_str(),
        path: req.uri().path(),
        headers: req.headers(),
    };
    let out = side
        .apply(&data, &facts)
        .map_err(|why| untransformed(t, StatusCode::BAD_REQUEST, why))?;
    check_size(t, out.len(), StatusCode::PAYLOAD_TOO_LARGE, "the request's")?;
    set_length_and_type(req.headers_mut(), out.len(), side);
    if let Some(head) = req.extensions_mut().get_mut::<BodyHead>() {
        // Trailers would contradict the new body (a digest of the old).
        head.trailers = None;
        head.data = Bytes::from(out);
    }
    Ok(())
}

/// The backend's answer transformed when its `Content-Type` says the
/// side's format; other answers (an error page, a redirect) pass as
/// they are. Read whole, within the bound and the backend's idle limit.
pub async fn response(
    t: &BodyTransform,
    asked: Option<&Asked>,
    response: Response<ResponseBody>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (Some(side), Some(asked)) = (t.response.as_ref(), asked) else {
        return Ok(response);
    };
    let matches = type_of(response.headers()).is_some_and(|ct| side.from.is(ct));
    if !matches || response.body().is_end_stream() {
        return Ok(response);
    }
    let coded = response
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .filter(|c| !c.as_bytes().eq_ignore_ascii_case(b"identity"));
    if let Some(coding) = coded {
        let why = format!("the answer is encoded ({coding:?}), though none was asked for");
        return Err(untransformed(t, StatusCode::BAD_GATEWAY, why));
    }
    let (mut parts, body) = response.into_parts();
    let limit = usize::try_from(t.max_body).unwrap_or(usize::MAX);
    let data = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let why = format!("the answer's body is over maxBodyBytes ({})", t.max_body);
            return Err(untransformed(t, StatusCode::BAD_GATEWAY, why));
        }
        Err(e) => return Err(ProxyError::Backend(e.to_string())),
    };
    let out = side
        .apply(&data, &view(asked))
        .map_err(|why| untransformed(t, StatusCode::BAD_GATEWAY, format!("the answer: {why}")))?;
    check_size(t, out.len(), StatusCode::BAD_GATEWAY, "the answer's")?;
    set_length_and_type(&mut parts.headers, out.len(), side);
    // Validators and digests of the old body would lie about the new one.
    for stale in ["etag", "content-md5", "digest", "content-digest"] {
        parts.headers.remove(stale);
    }
    Ok(Response::from_parts(
        parts,
        Either::Right(Full::new(Bytes::from(out))),
    ))
}

/// A transformed body may not outgrow the bound either.
fn check_size(
    t: &BodyTransform,
    len: usize,
    status: StatusCode,
    whose: &str,
) -> Result<(), ProxyError> {
    match len as u64 > t.max_body {
        true => {
            let why = format!(
                "{whose} body transformed is {len} bytes, over maxBodyBytes ({})",
                t.max_body
            );
            Err(untransformed(t, status, why))
        }
        false => Ok(()),
    }
}

fn set_length_and_type(headers: &mut HeaderMap, len: usize, side: &Side) {
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(side.to.content_type()),
    );
    // The length is now the body's own; no coding stands between.
    headers.remove(http::header::CONTENT_ENCODING);
}

/// The one `Content-Type`, as text.
fn type_of(headers: &HeaderMap) -> Option<&str> {
    crate::headers::content_type(headers).ok().flatten()
}
