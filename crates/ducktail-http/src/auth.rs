//! Bearer-token checking for `http.token`.
//!
//! The comparison takes the same time whatever the first differing byte, so response timing
//! cannot reveal the token one byte at a time.

use actix_web::http::header::HeaderValue;

/// Whether `header` is `Bearer <token>`.
pub(crate) fn bearer_matches(header: Option<&HeaderValue>, token: &str) -> bool {
    let Some(presented) = header.and_then(|value| value.to_str().ok()).and_then(|value| value.strip_prefix("Bearer ")) else {
        return false;
    };
    let (presented, expected) = (presented.trim().as_bytes(), token.as_bytes());
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
}
