//! Tokens and scopes. A connection authenticates once, at `$connect`, with a
//! JWT (HS256 only, `exp` and `sub` required, 30 s of clock skew); its grants
//! and expiry are stored on the connection record, so every later frame is
//! checked against them without the token.
//!
//! A grant is `{role, entity}`: `role` is `subscribe`, `publish` or
//! `subscribe_publish`; `entity` is an exact entity id or a prefix ending in
//! `*` (`artist:*`, or `*` for everything).

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ids::{EntityId, UserId};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock skew tolerated on `exp`, in seconds.
pub const LEEWAY_SECS: u64 = 30;
/// The subprotocol that carries a token: offer `pushgate.v1, <token>`.
pub const TOKEN_SUBPROTOCOL: &str = "pushgate.v1";

/// What a grant lets a connection do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Subscribe to matching entities.
    Subscribe,
    /// Publish to matching entities.
    Publish,
    /// Both.
    SubscribePublish,
}

/// Something a connection asks to do to an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `subscribe`
    Subscribe,
    /// `publish`
    Publish,
}

/// One permission in a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// What it allows.
    pub role: Role,
    /// An exact entity id, or a prefix ending in `*`.
    pub entity: String,
}

impl Grant {
    /// Whether this grant allows `action` on `entity`.
    pub fn allows(&self, action: Action, entity: &EntityId) -> bool {
        let role_ok = matches!(
            (self.role, action),
            (Role::SubscribePublish, _)
                | (Role::Subscribe, Action::Subscribe)
                | (Role::Publish, Action::Publish)
        );
        let entity_ok = match self.entity.strip_suffix('*') {
            Some(prefix) => entity.as_str().starts_with(prefix),
            None => self.entity == entity.as_str(),
        };
        role_ok && entity_ok
    }

    fn is_valid(&self) -> bool {
        let pattern = self.entity.strip_suffix('*').unwrap_or(&self.entity);
        !self.entity.is_empty()
            && !pattern.contains('*')
            && (pattern.is_empty() || EntityId::new(pattern).is_ok())
    }
}

/// The claims pushgate reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, epoch seconds.
    pub exp: i64,
    /// What the token allows.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// Why a token was refused. The token itself is never part of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, and anonymous connections are off.
    #[error("a token is required: pass ?token=<jwt> or the subprotocols \"pushgate.v1, <jwt>\"")]
    Missing,
    /// Not a JWT, too long, or missing required claims.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// The signature does not verify with pushgate's key.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// Signed with another algorithm (including `none`).
    #[error("the token must be signed with HS256")]
    WrongAlgorithm,
    /// Valid, but its `sub` or grants are unusable.
    #[error("the token's scope is invalid: {0}")]
    BadScope(String),
}

impl AuthError {
    /// The HTTP status that fails the handshake: 403 for a valid token with
    /// an unusable scope, 401 for the rest.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadScope(_) => 403,
            _ => 401,
        }
    }

    /// A short name for logs ("which" failure, never the token).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed(_) => "malformed",
            Self::Expired => "expired",
            Self::BadSignature => "bad_signature",
            Self::WrongAlgorithm => "wrong_algorithm",
            Self::BadScope(_) => "bad_scope",
        }
    }
}

/// Checks tokens signed with one HS256 key.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVerifier(HS256, key redacted)")
    }
}

impl TokenVerifier {
    /// A verifier for HS256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is checked in `verify` against the caller's clock.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Verifies `token` at `now` (epoch seconds) and checks its claims are
    /// usable.
    pub fn verify(&self, token: &str, now: i64) -> Result<(UserId, Claims), AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        if header_alg(token).is_some_and(|alg| alg != "HS256") {
            return Err(AuthError::WrongAlgorithm);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::WrongAlgorithm
                }
                ErrorKind::MissingRequiredClaim(c) => {
                    AuthError::Malformed(format!("the {c} claim is required"))
                }
                ErrorKind::Json(_) => AuthError::Malformed("the claims do not parse".into()),
                _ => AuthError::Malformed("not a JWT".into()),
            },
        )?;
        let claims = data.claims;
        if claims.exp + i64::try_from(LEEWAY_SECS).unwrap_or(0) <= now {
            return Err(AuthError::Expired);
        }
        let user = UserId::new(claims.sub.as_str())
            .map_err(|e| AuthError::BadScope(format!("sub: {e}")))?;
        if claims.grants.is_empty() {
            return Err(AuthError::BadScope("the token has no grants".into()));
        }
        if let Some(bad) = claims.grants.iter().find(|g| !g.is_valid()) {
            return Err(AuthError::BadScope(format!(
                "grant entity {:?} must be an entity id or a prefix ending in *",
                bad.entity
            )));
        }
        Ok((user, claims))
    }
}

/// The `alg` of a token's header, when the header decodes.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_owned)
}

/// Signs `claims` with HS256: the local token tool and the tests.
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, AuthError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| AuthError::Malformed(e.to_string()))
}

/// Why a connection may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No grant covers it.
    #[error("this connection's token does not allow {action} on {entity:?}")]
    Forbidden {
        /// "subscribe" or "publish".
        action: &'static str,
        /// The entity.
        entity: String,
    },
    /// The token expired while the connection was open.
    #[error("this connection's token has expired; reconnect with a new token")]
    TokenExpired,
}

/// The permissions a connection holds, as stored on its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// The token's grants.
    pub grants: Vec<Grant>,
    /// The token's `exp`, epoch seconds.
    pub expires_at: i64,
}

/// Whether a connection with `scope` (`None`: anonymous, allowed only when
/// the stage permits anonymous connections) may do `action` on `entity`
/// at `now` (epoch seconds). Anonymous connections may subscribe to
/// anything and publish nothing.
pub fn authorize(
    scope: Option<&Scope>,
    action: Action,
    entity: &EntityId,
    now: i64,
) -> Result<(), Denied> {
    let name = match action {
        Action::Subscribe => "subscribe",
        Action::Publish => "publish",
    };
    let forbidden = || Denied::Forbidden {
        action: name,
        entity: entity.to_string(),
    };
    match scope {
        None if action == Action::Subscribe => Ok(()),
        None => Err(forbidden()),
        Some(s) if s.expires_at + i64::try_from(LEEWAY_SECS).unwrap_or(0) <= now => {
            Err(Denied::TokenExpired)
        }
        Some(s) if s.grants.iter().any(|g| g.allows(action, entity)) => Ok(()),
        Some(_) => Err(forbidden()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test-key-0123456789abcdef0123456789";

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn grant(role: Role, entity: &str) -> Grant {
        Grant {
            role,
            entity: entity.into(),
        }
    }

    fn claims(sub: &str, exp: i64, grants: Vec<Grant>) -> Claims {
        Claims {
            sub: sub.into(),
            exp,
            grants,
        }
    }

    #[test]
    fn grants_match_exact_ids_and_prefixes() {
        let e = |s| EntityId::new(s).unwrap();
        let artists = grant(Role::Subscribe, "artist:*");
        assert!(artists.allows(Action::Subscribe, &e("artist:ed-sheeran")));
        assert!(!artists.allows(Action::Subscribe, &e("venue:1")));
        assert!(!artists.allows(Action::Publish, &e("artist:ed-sheeran")));
        let exact = grant(Role::SubscribePublish, "venue:1");
        assert!(exact.allows(Action::Publish, &e("venue:1")));
        assert!(!exact.allows(Action::Publish, &e("venue:10")));
        assert!(grant(Role::Publish, "*").allows(Action::Publish, &e("anything")));
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let v = TokenVerifier::hs256(KEY);
        let good = claims(
            "alice",
            now() + 600,
            vec![grant(Role::Subscribe, "artist:*")],
        );
        let (user, c) = v.verify(&mint(KEY, &good).unwrap(), now()).unwrap();
        assert_eq!((user.as_str(), c), ("alice", good.clone()));

        let expired = mint(KEY, &claims("alice", now() - 120, good.grants.clone())).unwrap();
        let skewed = mint(KEY, &claims("alice", now() - 5, good.grants.clone())).unwrap();
        let wrong_key = mint(b"another-key-another-key-another-key", &good).unwrap();
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &good,
            &EncodingKey::from_secret(KEY),
        )
        .unwrap();
        // alg: none, unsigned.
        let none = {
            use base64::Engine as _;
            let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!(
                "{}.{}.",
                b.encode(br#"{"alg":"none","typ":"JWT"}"#),
                b.encode(serde_json::to_vec(&good).unwrap())
            )
        };
        let no_exp = {
            #[derive(Serialize)]
            struct NoExp {
                sub: &'static str,
            }
            jsonwebtoken::encode(
                &Header::default(),
                &NoExp { sub: "a" },
                &EncodingKey::from_secret(KEY),
            )
            .unwrap()
        };
        let no_grants = mint(KEY, &claims("alice", now() + 600, vec![])).unwrap();
        let bad_grant = mint(
            KEY,
            &claims("alice", now() + 600, vec![grant(Role::Subscribe, "a*b*")]),
        )
        .unwrap();
        let bad_sub = mint(KEY, &claims("", now() + 600, good.grants.clone())).unwrap();

        assert!(v.verify(&skewed, now()).is_ok(), "within the clock skew");
        let cases: Vec<(&str, String, &str, u16)> = vec![
            ("garbage", "not-a-jwt".into(), "malformed", 401),
            ("two parts", "a.b".into(), "malformed", 401),
            ("huge", "a".repeat(MAX_TOKEN_BYTES + 1), "malformed", 401),
            ("expired", expired, "expired", 401),
            ("wrong key", wrong_key, "bad_signature", 401),
            ("hs384", hs384, "wrong_algorithm", 401),
            ("alg none", none, "wrong_algorithm", 401),
            ("no exp", no_exp, "malformed", 401),
            ("no grants", no_grants, "bad_scope", 403),
            ("bad grant", bad_grant, "bad_scope", 403),
            ("bad sub", bad_sub, "bad_scope", 403),
        ];
        for (name, token, kind, status) in cases {
            let err = v.verify(&token, now()).expect_err(name);
            assert_eq!((err.kind(), err.status()), (kind, status), "{name}: {err}");
            assert!(
                !err.to_string().contains(&token),
                "{name}: the token is never echoed"
            );
        }
    }

    #[test]
    fn authorize_applies_grants_and_expiry() {
        let e = EntityId::new("artist:1").unwrap();
        let scope = Scope {
            grants: vec![grant(Role::Subscribe, "artist:*")],
            expires_at: 1000,
        };
        assert_eq!(authorize(Some(&scope), Action::Subscribe, &e, 900), Ok(()));
        assert!(matches!(
            authorize(Some(&scope), Action::Publish, &e, 900),
            Err(Denied::Forbidden {
                action: "publish",
                ..
            })
        ));
        assert_eq!(
            authorize(Some(&scope), Action::Subscribe, &e, 1000 + 31),
            Err(Denied::TokenExpired)
        );
        assert_eq!(authorize(None, Action::Subscribe, &e, 0), Ok(()));
        assert!(authorize(None, Action::Publish, &e, 0).is_err());
    }
}
