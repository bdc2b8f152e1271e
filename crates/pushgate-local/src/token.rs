//! Tokens for local use: the `pushgate-local token` subcommand and
//! `POST /_pushgate/token` (the demo page's "get a token", in
//! `http::token`) both mint here,
//! with the emulator's signing key. Neither exists outside the emulator.
//!
//! A minted token is checked with the same verifier `$connect` uses before
//! it is handed out, so a token this tool gives is one the emulator accepts.

use pushgate_domain::auth::{mint, AuthError, Claims, Grant, TokenVerifier};
use serde::{Deserialize, Serialize};

/// The signing key the emulator uses when none is given (`--jwt-secret`,
/// `JWT_SECRET`): well known, so that `pushgate-local token` and a running
/// emulator agree with no set-up. For local use only.
pub const LOCAL_JWT_SECRET: &str = "pushgate-local-development-key-never-use-in-aws";

/// Default token lifetime: one hour.
pub const DEFAULT_TTL_SECS: u64 = 3600;

/// Longest lifetime this tool signs: one week.
pub const MAX_TTL_SECS: u64 = 7 * 24 * 3600;

/// What to put in a token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    /// The user id (`sub`).
    pub sub: String,
    /// What the token allows.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Lifetime in seconds (default one hour).
    pub ttl_secs: Option<u64>,
}

/// A signed token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MintedToken {
    /// The JWT.
    pub token: String,
    /// Its `exp`, epoch seconds.
    pub expires_at: i64,
}

/// Why no token was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The lifetime is zero or over [`MAX_TTL_SECS`].
    #[error("the lifetime must be 1 s to {MAX_TTL_SECS} s")]
    Ttl,
    /// A lifetime like `90s`, `15m`, `1h` or `2d` was expected.
    #[error("{0:?} is not a lifetime; write e.g. 90s, 15m, 1h or 2d")]
    TtlSyntax(String),
    /// `$connect` would refuse it (bad `sub` or grants).
    #[error(transparent)]
    Refused(#[from] AuthError),
}

/// Parses `90`, `90s`, `15m`, `1h` or `2d` into seconds.
pub fn parse_ttl(text: &str) -> Result<u64, TokenError> {
    let text = text.trim();
    let bad = || TokenError::TtlSyntax(text.to_owned());
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

/// Signs a token for `request` with `secret`, at `now` (epoch seconds).
pub fn mint_local(
    secret: &str,
    request: &TokenRequest,
    now: i64,
) -> Result<MintedToken, TokenError> {
    let ttl = request.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(TokenError::Ttl);
    }
    let claims = Claims {
        sub: request.sub.clone(),
        exp: now.saturating_add(i64::try_from(ttl).map_err(|_| TokenError::Ttl)?),
        grants: request.grants.clone(),
    };
    let token = mint(secret.as_bytes(), &claims)?;
    TokenVerifier::hs256(secret.as_bytes()).verify(&token, now)?;
    Ok(MintedToken {
        token,
        expires_at: claims.exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_domain::auth::Role;

    #[test]
    fn lifetimes_parse_with_units() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("").is_err());
    }

    #[test]
    fn minted_tokens_verify_and_bad_scopes_are_refused() {
        let now = 1_795_000_000;
        let request = TokenRequest {
            sub: "alice".into(),
            grants: vec![Grant {
                role: Role::Subscribe,
                entity: "artist:*".into(),
            }],
            ttl_secs: Some(60),
        };
        let minted = mint_local("k", &request, now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(minted.expires_at, now + 60);
        let (user, claims) = TokenVerifier::hs256(b"k")
            .verify(&minted.token, now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(user.as_str(), "alice");
        assert_eq!(claims.grants, request.grants);

        let bad = TokenRequest {
            sub: String::new(),
            ..request.clone()
        };
        assert!(matches!(
            mint_local("k", &bad, now),
            Err(TokenError::Refused(_))
        ));
        let forever = TokenRequest {
            ttl_secs: Some(MAX_TTL_SECS + 1),
            ..request
        };
        assert_eq!(mint_local("k", &forever, now), Err(TokenError::Ttl));
    }
}
