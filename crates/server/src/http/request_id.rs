//! Request ids, and the last step of every answer (run by [`super::gate`]): every response
//! gets an `X-Request-Id` and every error body the one shape, with that id. Errors produced
//! anywhere below (handlers, extractors, fallbacks, panics) carry an [`ErrorInfo`]; anything
//! else that is an error without a JSON body is rewritten too, so no plain-text rejection
//! ever reaches a client.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

use super::error::{ApiError, ErrorInfo};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in its extensions for handlers and logs. Held as a header value, so
/// the response's `X-Request-Id` shares its bytes instead of copying them.
#[derive(Clone, Debug)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only ids made of ASCII letters, digits and `._-` are ever built.
        self.0.to_str().unwrap_or_default()
    }
}

fn acceptable(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A client may mistakenly send a key as its request id; such an id is never echoed or
/// logged. Anything shaped like a key (`{letters}_{38 base62}`) is replaced.
fn looks_like_a_key(v: &str) -> bool {
    v.split_once('_').is_some_and(|(prefix, rest)| {
        (2..=8).contains(&prefix.len())
            && prefix.bytes().all(|b| b.is_ascii_lowercase())
            && rest.len() == keyward_core::key::BODY_LEN
            && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// `req_` and 22 random base62 characters. A request id is a label, not a secret, so its
/// letters come from a fast generator of the thread's (Xoshiro256++, seeded once from the
/// system's) rather than from the cryptographic one, which would guard ids that need no
/// guarding: an id is never a token, and its 22 letters set it apart from every other id.
/// Each draw of 64 bits gives up to eight letters, read off as the digits of the draw taken
/// as a fraction in [0, 1) and written in base 62 (one multiplication each, no division):
/// the eight use 48 of its bits, so every letter is as likely as any other to within 2⁻¹⁶.
fn new_id() -> HeaderValue {
    use rand::{RngCore, SeedableRng};
    thread_local! {
        // Nothing to drop, so it is there for as long as its thread runs: `with` cannot fail.
        static LABELS: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(rand::rngs::SmallRng::from_rng(&mut rand::rng()));
    }
    let mut id = [0u8; 26];
    id[..4].copy_from_slice(b"req_");
    LABELS.with(|labels| {
        let mut labels = labels.borrow_mut();
        for letters in id[4..].chunks_mut(8) {
            base62_digits(labels.next_u64(), letters);
        }
    });
    // Its own allocation, not a piece of the thread's buffer (`super::arena`): a routed
    // request keeps its id for as long as it runs, which could keep a whole buffer alive.
    // ASCII letters and digits: always a valid header value.
    HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(&id))
        .unwrap_or_else(|_| HeaderValue::from_static("req_"))
}

/// Fills `out` with the first base62 digits of `fraction` / 2⁶⁴.
fn base62_digits(mut fraction: u64, out: &mut [u8]) {
    use keyward_core::base62::ALPHABET;
    for letter in out {
        // The integer part of fraction × 62 is the next digit; what is left, the next fraction.
        let scaled = u128::from(fraction) * 62;
        *letter = ALPHABET[(scaled >> 64) as usize];
        fraction = scaled as u64;
    }
}

/// The id of a request: the client's own when it is acceptable, else a new one.
pub fn id_of(headers: &HeaderMap) -> RequestId {
    // Found by comparing the few names a request has, rather than by hashing this one.
    let given = headers.iter().find(|(name, _)| **name == X_REQUEST_ID);
    let given = given.map(|(_, value)| value).filter(|v| {
        v.to_str()
            .is_ok_and(|v| acceptable(v) && !looks_like_a_key(v))
    });
    RequestId(given.cloned().unwrap_or_else(new_id))
}

/// Writes an error body in the one shape and the `X-Request-Id` header.
pub fn finish(mut response: Response, id: RequestId) -> Response {
    let error = match response.extensions_mut().remove::<ErrorInfo>() {
        Some(ErrorInfo(e)) => Some(e),
        None if is_bare_error(&response) => Some(fallback_error(response.status())),
        None => None,
    };
    if let Some(error) = error {
        log_server_error(&error, &id);
        let (mut parts, _) = response.into_parts();
        parts.status = error.status;
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        parts.headers.remove(header::CONTENT_LENGTH);
        response = Response::from_parts(parts, Body::from(error.body(id.as_str())));
    }
    put_id(response.headers_mut(), id.0);
    response
}

/// The whole answer for `error`, its body written already: for an error the gate holds
/// itself (a refused key on `GET /v1/whoami`), which then need not travel to [`finish`] in
/// the answer's extensions (a map allocated for it, filled and emptied) before its body is
/// written. [`finish`] still adds `X-Request-Id`.
pub fn refusal(error: ApiError, id: &RequestId) -> Response {
    log_server_error(&error, id);
    let mut response = error.head();
    *response.body_mut() = Body::from(error.body(id.as_str()));
    response
}

fn log_server_error(error: &ApiError, id: &RequestId) {
    if error.status.is_server_error() {
        tracing::error!(request_id = %id.as_str(), status = %error.status, code = error.code, "answered with a server error");
    }
}

/// Sets `X-Request-Id`: in the slot that laid-out answers keep for it
/// ([`super::limit_headers`]), found by comparing names, else as a new header. Only this
/// function writes the header, so there is never more than one value to replace.
fn put_id(headers: &mut HeaderMap, id: HeaderValue) {
    match headers.iter_mut().find(|(name, _)| **name == X_REQUEST_ID) {
        Some((_, slot)) => *slot = id,
        None => {
            headers.insert(X_REQUEST_ID.clone(), id);
        }
    }
}

/// An error status whose body is not ours (a framework rejection, a panic answer). The
/// dashboard's HTML error pages are ours too: people get pages, programs get JSON.
fn is_bare_error(r: &Response) -> bool {
    // The status first: most answers succeed, and then no header need be looked up.
    let is_error = r.status().is_client_error() || r.status().is_server_error();
    is_error
        && !r
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"))
}

fn fallback_error(status: StatusCode) -> ApiError {
    match status {
        StatusCode::NOT_FOUND => ApiError::not_found(),
        StatusCode::METHOD_NOT_ALLOWED => method_not_allowed(),
        StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => unsupported_media_type(),
        s if s.is_client_error() => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request could not be understood.",
        ),
        _ => {
            tracing::error!(status = %status, "an error response without a body reached the edge");
            ApiError::internal()
        }
    }
}

pub fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This method is not allowed on this path.",
    )
}

pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "The request body is larger than 1 MiB.",
    )
}

pub fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Send the request body as JSON with 'Content-Type: application/json'.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_req_and_22_base62_characters_and_differ() {
        let (a, b) = (new_id(), new_id());
        for id in [&a, &b] {
            let id = id.to_str().unwrap();
            assert_eq!(id.len(), 26, "{id}");
            assert!(id.starts_with("req_"));
            assert!(id[4..].bytes().all(|c| c.is_ascii_alphanumeric()), "{id}");
            assert!(acceptable(id) && !looks_like_a_key(id));
        }
        assert_ne!(a, b);
    }

    #[test]
    fn digits_are_read_off_the_fraction_in_base_62() {
        let alphabet = keyward_core::base62::ALPHABET;
        let mut out = [0u8; 8];
        base62_digits(0, &mut out);
        assert_eq!(&out, b"00000000");
        base62_digits(u64::MAX, &mut out);
        assert_eq!(&out, b"zzzzzzzz");
        // k/62 (rounded up to the next 1/2⁶⁴) starts with digit k, then zeros.
        for k in 0..62u128 {
            let fraction = (k << 64).div_ceil(62);
            let mut two = [0u8; 2];
            base62_digits(fraction as u64, &mut two);
            assert_eq!(two, [alphabet[k as usize], b'0'], "{k}");
        }
    }

    #[test]
    fn every_letter_is_about_as_likely_in_every_place() {
        use rand::{RngCore, SeedableRng};
        let alphabet = keyward_core::base62::ALPHABET;
        // 10 000 of each letter expected in each of a draw's eight places: one standard
        // deviation is about 99, so ±600 is six of them. A byte modulo 62 would give the first
        // eight letters 12 100 each and fail.
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut counts = [[0u32; 62]; 8];
        let mut letters = [0u8; 8];
        for _ in 0..62 * 10_000 {
            base62_digits(rng.next_u64(), &mut letters);
            for (place, letter) in letters.iter().enumerate() {
                let index = alphabet.iter().position(|a| a == letter).expect("base62");
                counts[place][index] += 1;
            }
        }
        for place in counts {
            assert!(
                place.iter().all(|n| (9_400..=10_600).contains(n)),
                "{place:?}"
            );
        }
    }
}
