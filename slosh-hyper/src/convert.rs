//! Conversion between core's answers and hyper's: status, header names
//! and values, whole bodies.

use std::borrow::Cow;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue};

use crate::Body;

pub(crate) fn full(bytes: Bytes) -> Body {
    BoxBody::new(Full::new(bytes))
}

/// Core's immediate response as hyper's.
pub(crate) fn whole(mut response: slosh_core::Response) -> hyper::Response<Body> {
    let body = std::mem::take(&mut response.body);
    convert(response, full(body))
}

/// Core's response head as hyper's, with `body` as its body.
pub(crate) fn convert(response: slosh_core::Response, body: Body) -> hyper::Response<Body> {
    let mut out = hyper::Response::new(body);
    *out.status_mut() = hyper::StatusCode::from_u16(response.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    for (name, value) in response.headers {
        // Core writes only ASCII header values it built itself; a value that
        // still fails is dropped rather than sent malformed.
        if let (Ok(name), Some(value)) = (header_name(name), header_value(value)) {
            headers.append(name, value);
        }
    }
    out
}

/// hyper's value for one of core's header values: a constant is borrowed,
/// not copied. `None` for a value that would be malformed on the wire.
pub(crate) fn header_value(value: Cow<'static, str>) -> Option<HeaderValue> {
    // The values nearly every answer carries, built at compile time, so
    // their bytes are not checked again per answer (docs/DECISIONS.md).
    const JSON: HeaderValue = HeaderValue::from_static("application/json");
    const XML: HeaderValue = HeaderValue::from_static("text/xml; charset=utf-8");
    const NO_STORE: HeaderValue = HeaderValue::from_static("no-cache, no-store");
    match value {
        Cow::Borrowed("application/json") => Some(JSON),
        Cow::Borrowed("text/xml; charset=utf-8") => Some(XML),
        Cow::Borrowed("no-cache, no-store") => Some(NO_STORE),
        // `from_static` panics on a byte a header value cannot hold, so the
        // same bytes `HeaderValue::from_str` accepts are checked first.
        Cow::Borrowed(text) => text
            .bytes()
            .all(|byte| byte == b'\t' || (0x20..0x7f).contains(&byte))
            .then(|| HeaderValue::from_static(text)),
        Cow::Owned(text) => HeaderValue::try_from(text).ok(),
    }
}

/// hyper's name for one of core's header names. The two every answer
/// carries are matched to hyper's constants: `HeaderName::from_bytes`
/// lower-cases and looks up every name, which showed in the profile of a
/// publish.
pub(crate) fn header_name(name: &str) -> Result<HeaderName, hyper::header::InvalidHeaderName> {
    match name {
        "Content-Type" => Ok(hyper::header::CONTENT_TYPE),
        "Cache-Control" => Ok(hyper::header::CACHE_CONTROL),
        _ => HeaderName::from_bytes(name.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_match_what_hyper_parses() {
        for name in [
            "Content-Type",
            "Cache-Control",
            "Retry-After",
            "X-Accel-Buffering",
        ] {
            assert_eq!(
                header_name(name).unwrap(),
                HeaderName::from_bytes(name.as_bytes()).unwrap()
            );
        }
        assert!(header_name("bad name").is_err());
    }

    #[test]
    fn constant_header_values_are_borrowed_and_bad_ones_dropped() {
        let constant = "no-store";
        let value = header_value(Cow::Borrowed(constant)).unwrap();
        assert_eq!(value.as_bytes().as_ptr(), constant.as_ptr());
        for common in [
            "application/json",
            "text/xml; charset=utf-8",
            "no-cache, no-store",
        ] {
            assert_eq!(header_value(Cow::Borrowed(common)).unwrap(), common);
        }
        assert_eq!(
            header_value(Cow::Owned("a\tb".to_string())).unwrap(),
            "a\tb"
        );
        for bad in ["a\r\nb", "nul\0", "del\x7f"] {
            assert!(header_value(Cow::Borrowed(bad)).is_none(), "{bad:?}");
            assert!(
                header_value(Cow::Owned(bad.to_string())).is_none(),
                "{bad:?}"
            );
        }
    }
}
