//! What API Gateway checks before a `@connections` call reaches the
//! connection: a SigV4 signature for `execute-api` in the API's region,
//! made within the last 15 minutes.
//!
//! AWS answers an unsigned call 403 `MissingAuthenticationTokenException`,
//! and a badly signed one 403 `InvalidSignatureException`, before anything
//! else. An emulator that let unsigned calls through would pass a pusher
//! that forgot to sign. The emulator can only verify a signature whose
//! secret it knows: requests signed with its own key ([`LOCAL_ACCESS_KEY`],
//! the one its notifier uses and the README's examples set) are verified
//! in full, by signing the received request again with `aws-sigv4`; any
//! other key is checked for form, scope, region and time only.

use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;

/// The access key id (and secret) of the emulator's own credentials.
pub const LOCAL_ACCESS_KEY: &str = "local";
/// How far a request's `x-amz-date` may be from now.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why a `@connections` call was refused, as API Gateway words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization` header.
    #[error("Missing Authentication Token")]
    Missing,
    /// An `Authorization` header that is not a SigV4 one.
    #[error("Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters: {0}")]
    Incomplete(&'static str),
    /// Signed for another service.
    #[error("Credential should be scoped to correct service: 'execute-api'.")]
    WrongService,
    /// Signed for another region.
    #[error("Credential should be scoped to a valid region, not '{0}'.")]
    WrongRegion(String),
    /// `x-amz-date` missing, malformed, or more than 15 minutes off.
    #[error("Signature expired or not yet current (x-amz-date must be within 15 minutes of now)")]
    Expired,
    /// Signed with the emulator's key, but not this request.
    #[error("The request signature we calculated does not match the signature you provided.")]
    Mismatch,
}

impl Refusal {
    /// The `x-amzn-ErrorType` API Gateway sends with it.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Missing => "MissingAuthenticationTokenException",
            Self::Incomplete(_) => "IncompleteSignatureException",
            _ => "InvalidSignatureException",
        }
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…,
/// SignedHeaders=…, Signature=…`.
struct Authorization<'a> {
    access_key: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse(value: &str) -> Result<Authorization<'_>, Refusal> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or(Refusal::Incomplete("not AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or(Refusal::Incomplete("no Credential"))?;
    let signed = signed.ok_or(Refusal::Incomplete("no SignedHeaders"))?;
    let signature = signature.ok_or(Refusal::Incomplete("no Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, _date, region, service, "aws4_request"] = scope[..] else {
        return Err(Refusal::Incomplete(
            "Credential is not key/date/region/service/aws4_request",
        ));
    };
    Ok(Authorization {
        access_key,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// `20261129T231400Z` as a time.
fn amz_date(value: &str) -> Option<SystemTime> {
    if value.len() != 16 || !value.is_ascii() {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &value[0..4],
        &value[4..6],
        &value[6..8],
        &value[9..11],
        &value[11..13],
        &value[13..15]
    );
    let time = aws_smithy_types::DateTime::from_str(
        &rfc3339,
        aws_smithy_types::date_time::Format::DateTime,
    )
    .ok()?;
    SystemTime::try_from(time).ok()
}

/// Checks the signature of a request for `region`: `method`, the path and
/// query as received, its headers and body, at `now`.
pub fn verify(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    region: &str,
    now: SystemTime,
) -> Result<(), Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = parse(header("authorization").ok_or(Refusal::Missing)?)?;
    if authorization.service != "execute-api" {
        return Err(Refusal::WrongService);
    }
    if authorization.region != region {
        return Err(Refusal::WrongRegion(authorization.region.to_owned()));
    }
    let signed_at = header("x-amz-date")
        .and_then(amz_date)
        .ok_or(Refusal::Expired)?;
    let skew = now
        .duration_since(signed_at)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or(Duration::MAX);
    if skew > MAX_SKEW {
        return Err(Refusal::Expired);
    }
    if authorization.access_key != LOCAL_ACCESS_KEY {
        return Ok(());
    }
    let expected = sign_again(
        &authorization,
        method,
        path_and_query,
        headers,
        body,
        region,
        signed_at,
    )
    .ok_or(Refusal::Mismatch)?;
    if expected == authorization.signature {
        Ok(())
    } else {
        Err(Refusal::Mismatch)
    }
}

/// The signature the emulator's own key gives this request, with the
/// headers it says it signed, at the time it says it signed.
fn sign_again(
    authorization: &Authorization<'_>,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    region: &str,
    signed_at: SystemTime,
) -> Option<String> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};

    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed: Vec<(&str, &str)> = authorization
        .signed_headers
        .iter()
        .filter(|h| **h != "x-amz-date" && **h != "x-amz-security-token")
        .map(|h| Some((*h, value(h)?)))
        .collect::<Option<_>>()?;
    let uri = format!("http://{}{path_and_query}", value("host")?);
    let credentials = aws_credential_types::Credentials::new(
        LOCAL_ACCESS_KEY,
        LOCAL_ACCESS_KEY,
        value("x-amz-security-token").map(str::to_owned),
        None,
        "pushgate-local",
    );
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("execute-api")
        .time(signed_at)
        .settings(SigningSettings::default())
        .build()
        .ok()?
        .into();
    let signable =
        SignableRequest::new(method, &uri, signed.into_iter(), SignableBody::Bytes(body)).ok()?;
    let (_, signature) = sign(signable, &params).ok()?.into_parts();
    Some(signature)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn signed(key: &str, region: &str, service: &str, at: SystemTime, body: &[u8]) -> HeaderMap {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let identity =
            aws_credential_types::Credentials::new(key, LOCAL_ACCESS_KEY, None, None, "t").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers = [
            ("host", "127.0.0.1:3001"),
            ("content-type", "application/json"),
        ];
        let signable = SignableRequest::new(
            "POST",
            "http://127.0.0.1:3001/local/@connections/abc%3D",
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut request = axum::http::Request::post("/")
            .header("host", "127.0.0.1:3001")
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        instructions.apply_to_request_http1x(&mut request);
        request.headers().clone()
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
        let stale = now - Duration::from_secs(16 * 60);
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
        let early = now + Duration::from_secs(16 * 60);
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
