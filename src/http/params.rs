//! What the Prometheus API (`prom_api`) and the Alertmanager API (`am_api`) share: request
//! parameters (URL query and form body), read under a cap on their number while they
//! are parsed, a capped body read (the events ingest's reader), and the JSON answer.

use super::ingest::{read_body, BodyError};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};

/// Most parameters one request may carry, the URL's and a form body's together.
pub const MAX_PARAMS: usize = 1000;

/// A request's parameters in order: a form body's first (POST), then the URL's.
pub struct Params(Vec<(String, String)>);

/// More than [`MAX_PARAMS`] parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyParams;

impl std::fmt::Display for TooManyParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "more than {MAX_PARAMS} parameters (URL and form together)"
        )
    }
}

/// Appends the pairs of `text` to `out`, stopping at the first one past `max` in all:
/// no pair past the cap is decoded or stored.
fn parse_into(
    out: &mut Vec<(String, String)>,
    text: &[u8],
    max: usize,
) -> Result<(), TooManyParams> {
    for (k, v) in url::form_urlencoded::parse(text) {
        if out.len() >= max {
            return Err(TooManyParams);
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(())
}

/// Whether the request's body is a form (`application/x-www-form-urlencoded`).
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

impl Params {
    /// The URL's parameters alone.
    pub fn of_url(uri: &Uri) -> Result<Params, TooManyParams> {
        Params::parse(&Method::GET, uri, &HeaderMap::new(), &[])
    }

    /// A POST form body's parameters (when it is a form), then the URL's, at most
    /// [`MAX_PARAMS`] in all.
    pub fn parse(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Params, TooManyParams> {
        Params::parse_capped(method, uri, headers, body, MAX_PARAMS)
    }

    fn parse_capped(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        max: usize,
    ) -> Result<Params, TooManyParams> {
        let mut out = Vec::new();
        if *method == Method::POST && is_form(headers) {
            parse_into(&mut out, body, max)?;
        }
        if let Some(q) = uri.query() {
            parse_into(&mut out, q.as_bytes(), max)?;
        }
        Ok(Params(out))
    }

    /// The first value of `k` ("" when absent, as Go's `FormValue`).
    pub fn get(&self, k: &str) -> &str {
        self.first(k).unwrap_or("")
    }

    /// The first value of `k`, if any.
    pub fn first(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, k: &str) -> bool {
        self.0.iter().any(|(n, _)| n == k)
    }

    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Why a body could not be read under its cap.
pub enum ReadError {
    /// Longer than the cap (declared or sent).
    TooLarge,
    /// `web.request_body_timeout` passed before the body ended.
    Timeout,
    Unreadable(String),
}

/// Reads a body of at most `max` bytes with the ingest API's reader: a body declared
/// larger is refused unread (what was sent is discarded, bounded), one that turns out
/// larger is refused once past the cap.
pub async fn read_capped(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, ReadError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        super::discard_body(body).await;
        return Err(ReadError::TooLarge);
    }
    read_body(body, max).await.map_err(|e| match e {
        BodyError::TooLarge => ReadError::TooLarge,
        BodyError::Timeout => ReadError::Timeout,
        BodyError::Unreadable(e) => ReadError::Unreadable(e),
    })
}

/// A `200` JSON answer.
pub fn json_body(body: impl Into<Body>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.into()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        h
    }

    #[test]
    fn form_values_come_before_the_urls() {
        let uri: Uri = "/x?a=url&b=2".parse().unwrap();
        let p = Params::parse(&Method::POST, &uri, &form(), b"a=form").unwrap();
        assert_eq!(p.get("a"), "form");
        assert_eq!(p.all("a"), ["form", "url"]);
        assert_eq!(p.get("b"), "2");
        assert_eq!(p.get("c"), "");
        // Not a form, or not a POST: the body is not read for parameters.
        let p = Params::parse(&Method::POST, &uri, &HeaderMap::new(), b"a=form").unwrap();
        assert_eq!(p.get("a"), "url");
        let p = Params::parse(&Method::GET, &uri, &form(), b"a=form").unwrap();
        assert_eq!(p.get("a"), "url");
    }

    #[test]
    fn form_with_more_params_than_the_cap_is_refused_while_parsing() {
        let uri: Uri = "/x?z=1".parse().unwrap();
        let body = "a=1&".repeat(MAX_PARAMS);
        // Exactly the cap in the body, one more in the URL.
        assert_eq!(
            Params::parse(&Method::POST, &uri, &form(), body.as_bytes()).err(),
            Some(TooManyParams)
        );
        let uri: Uri = "/x".parse().unwrap();
        assert!(Params::parse(&Method::POST, &uri, &form(), body.as_bytes()).is_ok());
        // Parsing stops at the cap: a body of a million pairs keeps at most the cap.
        let huge = "&".repeat(10) + &"k=v&".repeat(1_000_000);
        let mut out = Vec::new();
        assert_eq!(parse_into(&mut out, huge.as_bytes(), 5), Err(TooManyParams));
        assert_eq!(out.len(), 5);
    }
}
