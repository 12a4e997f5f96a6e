//! Reading a token out of an `authorization` header.
//!
//! - `Bearer <token>`: what steplake's clients send;
//! - `Basic <base64 of user:token>`: what JDBC and ADBC drivers send in the
//!   Flight SQL handshake when given a user name and password; the user
//!   name is ignored and the password is the token. Padding is optional:
//!   Go's Flight client (the ADBC driver) sends none.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// Standard base64, with or without `=` padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

use crate::AuthError;

/// Longest header value looked at (a token is 47 bytes).
const MAX_HEADER_LEN: usize = 4096;

/// The token in an `authorization` header value; `None` when there is no header.
pub fn token_from_header(value: Option<&str>) -> Result<Option<String>, AuthError> {
    let Some(value) = value.map(str::trim) else {
        return Ok(None);
    };
    if value.len() > MAX_HEADER_LEN {
        return Err(AuthError::Malformed);
    }
    let (kind, rest) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    let rest = rest.trim();
    if kind.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(Some(rest.to_string()));
    }
    if kind.eq_ignore_ascii_case("basic") {
        let decoded = BASE64.decode(rest).map_err(|_| AuthError::Malformed)?;
        let text = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
        let (_user, token) = text.split_once(':').ok_or(AuthError::Malformed)?;
        if token.is_empty() {
            return Err(AuthError::Malformed);
        }
        return Ok(Some(token.to_string()));
    }
    Err(AuthError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_both_carry_the_token() {
        assert_eq!(token_from_header(None).unwrap(), None);
        assert_eq!(
            token_from_header(Some("Bearer slk_x")).unwrap().as_deref(),
            Some("slk_x")
        );
        // "user:slk_x"
        let basic = base64::engine::general_purpose::STANDARD.encode("user:slk_x");
        assert_eq!(
            token_from_header(Some(&format!("Basic {basic}")))
                .unwrap()
                .as_deref(),
            Some("slk_x")
        );
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("u:slk_xy");
        assert_eq!(
            token_from_header(Some(&format!("Basic {unpadded}")))
                .unwrap()
                .as_deref(),
            Some("slk_xy")
        );
        for bad in [
            "slk_x",
            "Bearer ",
            "Basic !!!",
            "Digest x",
            "Basic dXNlcg==",
        ] {
            assert!(
                token_from_header(Some(bad)).is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}
