//! Validated identifiers. Every id that reaches the store or a key has been
//! checked here, so the adapters never see an empty or oversized id.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::MAX_ID_BYTES;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which id (`entityId`, `userId`, `connectionId`).
        kind: &'static str,
    },
    /// The id is longer than allowed.
    #[error("{kind} must be at most {max} bytes, got {len}")]
    TooLong {
        /// Which id.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The id holds a control character.
    #[error("{kind} must not contain control characters")]
    ControlCharacter {
        /// Which id.
        kind: &'static str,
    },
}

fn validate(kind: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong {
            kind,
            len: value.len(),
            max,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter { kind });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `value` and wraps it.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate($kind, &value, $max)?;
                Ok(Self(value))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// What clients subscribe to, such as `artist:ed-sheeran`: 1 to 256 bytes
    /// of UTF-8 without control characters.
    EntityId,
    "entityId",
    MAX_ID_BYTES
);
id_type!(
    /// The user a connection belongs to (a token's `sub`): same rules as
    /// [`EntityId`].
    UserId,
    "userId",
    MAX_ID_BYTES
);
id_type!(
    /// API Gateway's id for one WebSocket connection, such as `Vq2FSfPqIAMCJ1g=`.
    ConnectionId,
    "connectionId",
    128
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_ids_follow_the_contract() {
        assert!(EntityId::new("artist:ed-sheeran").is_ok());
        assert!(EntityId::new("é".repeat(128)).is_ok(), "256 bytes of UTF-8");
        assert_eq!(
            EntityId::new("é".repeat(128) + "x"),
            Err(IdError::TooLong {
                kind: "entityId",
                len: 257,
                max: 256
            })
        );
        assert_eq!(EntityId::new(""), Err(IdError::Empty { kind: "entityId" }));
        assert_eq!(
            EntityId::new("a\nb"),
            Err(IdError::ControlCharacter { kind: "entityId" })
        );
        assert_eq!(
            EntityId::new("a\u{7f}"),
            Err(IdError::ControlCharacter { kind: "entityId" })
        );
    }

    #[test]
    fn ids_deserialize_only_when_valid() {
        let ok: EntityId = serde_json::from_str("\"venue:1\"").unwrap();
        assert_eq!(ok.as_str(), "venue:1");
        assert!(serde_json::from_str::<EntityId>("\"\"").is_err());
    }
}
