//! Tokens and scopes. A connection authenticates once, at `$connect`, with a
//! JWT (HS256 only, `exp` and `sub` required, 30 s of clock skew); its grants
//! and expiry are stored on the connection record, so every later frame is
//! checked against them without the token.
//!
//! `nbf` is honoured with the same skew; `aud` is checked when the stage
//! requires an audience. Keys shorter than 256 bits are refused, and a
//! previous key can be accepted next to the current one while the issuer
//! rotates keys ([`KeyRing`]); a [`TokenVerifier`] is a shared handle whose
//! keys can be swapped while it is in use.
//!
//! A grant is `{role, entity}`: `role` is `subscribe`, `publish` or
//! `subscribe_publish`; `entity` is an exact entity id or a prefix ending in
//! `*` (`artist:*`, or `*` for everything).

use std::sync::{Arc, RwLock};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ids::{EntityId, UserId};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
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
    /// `nbf` is still ahead (beyond the clock skew allowed).
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// This stage requires an audience (`JWT_AUDIENCE`) and the token's
    /// `aud` is missing or names others.
    #[error("the token is not meant for this service (aud)")]
    WrongAudience,
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
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::BadSignature => "bad_signature",
            Self::WrongAlgorithm => "wrong_algorithm",
            Self::BadScope(_) => "bad_scope",
        }
    }
}

/// Shortest signing key accepted, in bytes. RFC 7518 §3.2: an HS256 key
/// must be at least as long as the hash output (256 bits); a shorter key
/// can be brute-forced from any token it signed.
pub const MIN_KEY_BYTES: usize = 32;

/// A signing key too weak to use. The key itself is never part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Shorter than [`MIN_KEY_BYTES`].
    #[error("the signing key is {len} bytes; HS256 needs at least {MIN_KEY_BYTES} (256 bits), e.g. `openssl rand -base64 48`")]
    TooShort {
        /// Its length in bytes.
        len: usize,
    },
}

/// An HS256 key of at least [`MIN_KEY_BYTES`]. Its `Debug` output never
/// shows it.
#[derive(Clone)]
pub struct SigningKey(DecodingKey);

impl SigningKey {
    /// Checks the length of `secret` (the bytes of the configured value, as
    /// the token issuer uses them: no base64 decoding).
    pub fn new(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort { len: secret.len() });
        }
        Ok(Self(DecodingKey::from_secret(secret)))
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(redacted)")
    }
}

/// The keys a verifier accepts: the current one and, while a rotation is
/// under way, the previous one, so that tokens issued just before the
/// issuer switched keys keep working until they expire.
#[derive(Debug, Clone)]
pub struct KeyRing {
    current: SigningKey,
    previous: Option<SigningKey>,
}

impl KeyRing {
    /// The current key and, during a rotation, the previous one.
    pub fn new(current: SigningKey, previous: Option<SigningKey>) -> Self {
        Self { current, previous }
    }

    /// Whether a previous key is accepted too.
    pub fn has_previous(&self) -> bool {
        self.previous.is_some()
    }
}

/// The `aud` claim: one audience or several (RFC 7519 §4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims as signed: [`Claims`] plus the registered claims checked
/// here and not kept on the connection.
#[derive(Debug, Deserialize)]
struct SignedClaims {
    #[serde(flatten)]
    claims: Claims,
    /// Not before, epoch seconds.
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    aud: Option<Audience>,
}

/// Checks HS256 tokens.
///
/// A cheap handle: clones share one key slot, so a verifier built once at
/// start can be handed to every handler (`$connect`, `history`, …) while a
/// background task swaps keys in with [`TokenVerifier::set_keys`]; a
/// `verify` in flight keeps the keys it started with.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<RwLock<Arc<KeyRing>>>,
    audience: Option<Arc<str>>,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("algorithm", &"HS256")
            .field("keys", &"redacted")
            .field("audience", &self.audience)
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier accepting tokens signed with any key of `keys`, with any
    /// audience or none until [`TokenVerifier::with_audience`] says which.
    pub fn new(keys: KeyRing) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp`, `nbf` and `aud` are checked in `verify`, against the
        // caller's clock and with pushgate's own refusal reasons.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            audience: None,
            validation,
        }
    }

    /// A verifier for one HS256 key, without the length check of
    /// [`SigningKey::new`]: for tools and tests that verify tokens they
    /// minted themselves. Configured keys go through [`SigningKey::new`].
    pub fn hs256(secret: &[u8]) -> Self {
        Self::new(KeyRing::new(
            SigningKey(DecodingKey::from_secret(secret)),
            None,
        ))
    }

    /// Requires `aud` to be (or, as an array, contain) `audience`: a token
    /// without `aud`, or minted for another service that shares the key,
    /// is refused.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(Arc::from(audience.into()));
        self
    }

    /// The audience required, if any.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// Replaces the keys for this verifier and every clone of it.
    pub fn set_keys(&self, keys: KeyRing) {
        let keys = Arc::new(keys);
        match self.keys.write() {
            Ok(mut slot) => *slot = keys,
            // A panic while holding the lock cannot leave a half-written
            // `Arc` behind, so the slot is still sound.
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    fn current_keys(&self) -> Arc<KeyRing> {
        match self.keys.read() {
            Ok(slot) => Arc::clone(&slot),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Verifies `token` at `now` (epoch seconds) and checks its claims are
    /// usable: signature (current key, then the previous one), `exp` and
    /// `nbf` with [`LEEWAY_SECS`] of clock skew, `aud` when an audience is
    /// required, `sub` and grants.
    pub fn verify(&self, token: &str, now: i64) -> Result<(UserId, Claims), AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        if header_alg(token).is_some_and(|alg| alg != "HS256") {
            return Err(AuthError::WrongAlgorithm);
        }
        let keys = self.current_keys();
        let decoded = match self.decode(token, &keys.current) {
            Err(AuthError::BadSignature) => match &keys.previous {
                Some(previous) => self.decode(token, previous),
                None => Err(AuthError::BadSignature),
            },
            other => other,
        };
        let SignedClaims { claims, nbf, aud } = decoded?;
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(0);
        if claims.exp.saturating_add(leeway) <= now {
            return Err(AuthError::Expired);
        }
        if nbf.is_some_and(|nbf| nbf.saturating_sub(leeway) > now) {
            return Err(AuthError::NotYetValid);
        }
        if let Some(required) = self.audience.as_deref() {
            let ok = match &aud {
                None => false,
                Some(Audience::One(a)) => a == required,
                Some(Audience::Many(all)) => all.iter().any(|a| a == required),
            };
            if !ok {
                return Err(AuthError::WrongAudience);
            }
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

    fn decode(&self, token: &str, key: &SigningKey) -> Result<SignedClaims, AuthError> {
        jsonwebtoken::decode::<SignedClaims>(token, &key.0, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
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
            })
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

/// Signs `claims` with HS256: the local token tool and the tests. Any
/// serializable claims, so tests can add `nbf`, `aud` or leave `exp` out.
pub fn mint<C: Serialize>(secret: &[u8], claims: &C) -> Result<String, AuthError> {
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

    /// Signs arbitrary claims (with `nbf`, `aud`, …) with HS256.
    fn sign(key: &[u8], claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    }

    fn good_claims(extra: serde_json::Value) -> serde_json::Value {
        let mut c = serde_json::json!({
            "sub": "alice", "exp": now() + 600,
            "grants": [{"role": "subscribe", "entity": "artist:*"}],
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn ring(current: &[u8], previous: Option<&[u8]>) -> KeyRing {
        KeyRing::new(
            SigningKey::new(current).unwrap(),
            previous.map(|p| SigningKey::new(p).unwrap()),
        )
    }

    #[test]
    fn nbf_is_honoured_with_the_clock_skew() {
        let v = TokenVerifier::hs256(KEY);
        let t = |nbf: i64| sign(KEY, &good_claims(serde_json::json!({ "nbf": nbf })));
        assert!(v.verify(&t(now() - 60), now()).is_ok(), "already valid");
        assert!(v.verify(&t(now() + 20), now()).is_ok(), "within the skew");
        let err = v.verify(&t(now() + 120), now()).unwrap_err();
        assert_eq!(
            (err, AuthError::NotYetValid.status()),
            (AuthError::NotYetValid, 401)
        );
        assert_eq!(AuthError::NotYetValid.kind(), "not_yet_valid");
        // The caller's clock decides, not the machine's.
        assert!(v.verify(&t(now() + 120), now() + 120).is_ok());
    }

    #[test]
    fn aud_is_checked_only_when_an_audience_is_required() {
        let t = |extra| sign(KEY, &good_claims(extra));
        let with_aud = t(serde_json::json!({"aud": "pushgate"}));
        let other_aud = t(serde_json::json!({"aud": "billing"}));
        let aud_list = t(serde_json::json!({"aud": ["billing", "pushgate"]}));
        let other_list = t(serde_json::json!({"aud": ["billing", "search"]}));
        let no_aud = t(serde_json::json!({}));

        // No audience configured: any aud (or none) is fine.
        let open = TokenVerifier::hs256(KEY);
        for token in [&with_aud, &other_aud, &aud_list, &no_aud] {
            assert!(open.verify(token, now()).is_ok());
        }

        let strict = TokenVerifier::hs256(KEY).with_audience("pushgate");
        assert_eq!(strict.audience(), Some("pushgate"));
        assert!(strict.verify(&with_aud, now()).is_ok());
        assert!(strict.verify(&aud_list, now()).is_ok());
        for (name, token) in [
            ("other", &other_aud),
            ("other list", &other_list),
            ("none", &no_aud),
        ] {
            let err = strict.verify(token, now()).expect_err(name);
            assert_eq!(
                (err.kind(), err.status()),
                ("wrong_audience", 401),
                "{name}"
            );
        }
        // A clone shares the requirement.
        assert!(strict.clone().verify(&no_aud, now()).is_err());
    }

    #[test]
    fn keys_under_256_bits_are_refused() {
        assert_eq!(
            SigningKey::new(b"short").unwrap_err(),
            KeyError::TooShort { len: 5 }
        );
        assert!(SigningKey::new(&[7u8; MIN_KEY_BYTES - 1]).is_err());
        assert!(SigningKey::new(&[7u8; MIN_KEY_BYTES]).is_ok());
        let message = KeyError::TooShort { len: 5 }.to_string();
        assert!(message.contains("32"), "{message}");
        assert_eq!(
            format!("{:?}", SigningKey::new(KEY).unwrap()),
            "SigningKey(redacted)"
        );
    }

    #[test]
    fn the_previous_key_is_accepted_during_a_rotation() {
        const OLD: &[u8] = b"old-key-0123456789abcdef0123456789";
        const NEW: &[u8] = b"new-key-0123456789abcdef0123456789";
        const OTHER: &[u8] = b"other-key-0123456789abcdef012345678";
        let by_old = sign(OLD, &good_claims(serde_json::json!({})));
        let by_new = sign(NEW, &good_claims(serde_json::json!({})));
        let by_other = sign(OTHER, &good_claims(serde_json::json!({})));

        let v = TokenVerifier::new(ring(OLD, None));
        assert!(v.verify(&by_old, now()).is_ok());
        assert_eq!(
            v.verify(&by_new, now()).unwrap_err(),
            AuthError::BadSignature
        );

        // Rotation: the issuer switches to NEW; OLD stays accepted. A clone
        // made before the swap sees it too.
        let shared = v.clone();
        v.set_keys(ring(NEW, Some(OLD)));
        for verifier in [&v, &shared] {
            assert!(verifier.verify(&by_new, now()).is_ok());
            assert!(verifier.verify(&by_old, now()).is_ok());
            assert_eq!(
                verifier.verify(&by_other, now()).unwrap_err(),
                AuthError::BadSignature
            );
        }
        // Rotation over: OLD is refused.
        v.set_keys(ring(NEW, None));
        assert!(shared.verify(&by_new, now()).is_ok());
        assert_eq!(
            shared.verify(&by_old, now()).unwrap_err(),
            AuthError::BadSignature
        );
        // Still no algorithm confusion through the previous key.
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &good_claims(serde_json::json!({})),
            &EncodingKey::from_secret(OLD),
        )
        .unwrap();
        v.set_keys(ring(NEW, Some(OLD)));
        assert_eq!(
            v.verify(&hs384, now()).unwrap_err(),
            AuthError::WrongAlgorithm
        );
        let debug = format!("{v:?}");
        assert!(
            !debug.contains("old-key") && !debug.contains("new-key"),
            "{debug}"
        );
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
