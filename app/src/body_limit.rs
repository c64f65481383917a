//! Caps request bodies. JSON bodies are buffered whole before parsing, so without a cap
//! a client could make the service hold any amount of memory.

use poem::{
    Body, Endpoint, Error, IntoResponse, Middleware, Request, Response, Result,
    http::{StatusCode, header},
};

/// Bodies larger than this get a 413 problem.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct BodyLimit;

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint { inner }
    }
}

pub struct BodyLimitEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        // A chunked body declares no length: read it up to the cap. Requests without a
        // body (most of them: GET, DELETE) are passed on untouched.
        if declared.is_none() {
            let body = req.take_body();
            if body.is_empty() {
                req.set_body(body);
            } else {
                let body = body
                    .into_bytes_limit(MAX_BODY_BYTES)
                    .await
                    .map_err(|_| too_large())?;
                req.set_body(Body::from_bytes(body));
            }
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

fn too_large() -> Error {
    Error::from_string(
        format!(
            "The request body is larger than {} KiB.",
            MAX_BODY_BYTES / 1024
        ),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
}
