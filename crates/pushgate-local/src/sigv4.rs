//! What API Gateway checks before a `@connections` call reaches the
//! connection: a SigV4 signature for `execute-api` in the API's region,
//! made within 5 minutes of now (`pushgate_push::sigv4::verify`).
//!
//! AWS answers an unsigned call 403 `MissingAuthenticationTokenException`,
//! and a badly signed one 403 `InvalidSignatureException`, before anything
//! else. An emulator that let unsigned calls through would pass a pusher
//! that forgot to sign. The emulator can only verify a signature whose
//! secret it knows: requests signed with its own key ([`LOCAL_ACCESS_KEY`],
//! the one its notifier uses and the README's examples set) are verified
//! in full; any other key is checked for form, scope, region and time only.

use std::time::SystemTime;

use axum::http::HeaderMap;
pub use pushgate_push::sigv4::Refusal;

/// The access key id (and secret) of the emulator's own credentials.
pub const LOCAL_ACCESS_KEY: &str = "local";

/// Checks the signature of a `@connections` call for `region` at `now`.
pub fn verify(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    region: &str,
    now: SystemTime,
) -> Result<(), Refusal> {
    pushgate_push::sigv4::verify(method, path_and_query, headers, body, region, now, |key| {
        (key == LOCAL_ACCESS_KEY).then(|| LOCAL_ACCESS_KEY.to_owned())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::Duration;

    fn signed(key: &str, region: &str, service: &str, at: SystemTime, body: &[u8]) -> HeaderMap {
        let identity =
            aws_credential_types::Credentials::new(key, LOCAL_ACCESS_KEY, None, None, "t").into();
        let (instructions, _) = pushgate_push::sigv4::sign(
            &identity,
            region,
            at,
            "POST",
            "http://127.0.0.1:3001/local/@connections/abc%3D",
            &[
                ("host", "127.0.0.1:3001"),
                ("content-type", "application/json"),
            ],
            body,
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:3001".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        for (name, value) in instructions.headers() {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        // A signature for another service than execute-api.
        if service != pushgate_push::sigv4::SERVICE {
            let auth = headers["authorization"]
                .to_str()
                .unwrap()
                .replace("/execute-api/", &format!("/{service}/"));
            headers.insert("authorization", auth.parse().unwrap());
        }
        headers
    }

    const PATH: &str = "/local/@connections/abc%3D";

    #[test]
    fn accepts_what_the_local_key_signed_and_nothing_else() {
        let now = SystemTime::now();
        let headers = signed(LOCAL_ACCESS_KEY, "us-east-1", "execute-api", now, b"hi");
        assert_eq!(
            verify("POST", PATH, &headers, b"hi", "us-east-1", now),
            Ok(())
        );
        // Another body, path or method than was signed.
        for (method, path, body) in [
            ("POST", PATH, &b"hi!"[..]),
            ("POST", "/local/@connections/abd%3D", b"hi"),
            ("DELETE", PATH, b"hi"),
        ] {
            assert_eq!(
                verify(method, path, &headers, body, "us-east-1", now),
                Err(Refusal::Mismatch),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn refuses_unsigned_misscoped_and_stale_requests() {
        let now = SystemTime::now();
        let check = |headers: &HeaderMap| verify("POST", PATH, headers, b"hi", "us-east-1", now);
        assert_eq!(check(&HeaderMap::new()), Err(Refusal::Missing));
        let mut garbage = HeaderMap::new();
        garbage.insert("authorization", "Bearer abc".parse().unwrap());
        assert!(matches!(check(&garbage), Err(Refusal::Incomplete(_))));
        assert_eq!(
            check(&signed(
                LOCAL_ACCESS_KEY,
                "us-east-1",
                "execute-apx",
                now,
                b"hi"
            )),
            Err(Refusal::WrongService)
        );
        assert_eq!(
            check(&signed(
                LOCAL_ACCESS_KEY,
                "eu-west-1",
                "execute-api",
                now,
                b"hi"
            )),
            Err(Refusal::WrongRegion("eu-west-1".into()))
        );
        let stale = now - Duration::from_secs(6 * 60);
        assert_eq!(
            check(&signed(
                LOCAL_ACCESS_KEY,
                "us-east-1",
                "execute-api",
                stale,
                b"hi"
            )),
            Err(Refusal::Expired)
        );
        let early = now + Duration::from_secs(6 * 60);
        assert_eq!(
            check(&signed(
                LOCAL_ACCESS_KEY,
                "us-east-1",
                "execute-api",
                early,
                b"hi"
            )),
            Err(Refusal::Expired)
        );
        // Another key: its secret is unknown here, so form, scope and time
        // are all that is checked.
        let other = signed("AKIDOTHER", "us-east-1", "execute-api", now, b"hi");
        assert_eq!(
            verify("POST", PATH, &other, b"changed", "us-east-1", now),
            Ok(())
        );
        assert_eq!(
            Refusal::Missing.error_type(),
            "MissingAuthenticationTokenException"
        );
    }
}
