//! Bearer-token checking for `http.token`.
//!
//! The comparison takes the same time whatever the first differing byte, so response timing
//! cannot reveal the token one byte at a time.

use actix_web::http::header::HeaderValue;

/// The cookie `POST /api/login` sets, for the dashboard: a browser's `EventSource` cannot send an
/// `Authorization` header, and a token in a URL would end up in history and logs.
pub(crate) const TOKEN_COOKIE: &str = "ducktail_token";

/// Whether `header` is `Bearer <token>`.
pub(crate) fn bearer_matches(header: Option<&HeaderValue>, token: &str) -> bool {
    let Some(presented) = header.and_then(|value| value.to_str().ok()).and_then(|value| value.strip_prefix("Bearer ")) else {
        return false;
    };
    same_secret(presented.trim(), token)
}

/// Whether the `Cookie` header holds [`TOKEN_COOKIE`] with the token.
pub(crate) fn cookie_matches(header: Option<&HeaderValue>, token: &str) -> bool {
    let Some(cookies) = header.and_then(|value| value.to_str().ok()) else { return false };
    cookies.split(';').filter_map(|pair| pair.trim().split_once('=')).any(|(name, value)| name == TOKEN_COOKIE && same_secret(value.trim_matches('"'), token))
}

/// `presented == expected`, in a time that does not depend on where they differ.
pub(crate) fn same_secret(presented: &str, expected: &str) -> bool {
    let (presented, expected) = (presented.as_bytes(), expected.as_bytes());
    presented.len() == expected.len() && presented.iter().zip(expected).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let header = |text: &'static str| HeaderValue::from_static(text);
        assert!(bearer_matches(Some(&header("Bearer s3cret")), "s3cret"));
        assert!(!bearer_matches(Some(&header("Bearer s3cre")), "s3cret"));
        assert!(!bearer_matches(Some(&header("Bearer s3cretX")), "s3cret"));
        assert!(!bearer_matches(Some(&header("Basic s3cret")), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }

    #[test]
    fn only_the_token_cookie_with_the_exact_token_matches() {
        let header = |text: &'static str| HeaderValue::from_static(text);
        assert!(cookie_matches(Some(&header("ducktail_token=s3cret")), "s3cret"));
        assert!(cookie_matches(Some(&header("theme=dark; ducktail_token=s3cret; other=1")), "s3cret"));
        assert!(!cookie_matches(Some(&header("ducktail_token=s3cre")), "s3cret"));
        assert!(!cookie_matches(Some(&header("other_token=s3cret")), "s3cret"));
        assert!(!cookie_matches(None, "s3cret"));
    }
}
