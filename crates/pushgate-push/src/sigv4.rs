//! SigV4 for the Management API (`execute-api`), both sides of it: signing
//! a request ([`sign`], what [`crate::SignedHttpPusher`] sends) and
//! checking one as API Gateway does before a `@connections` call reaches
//! its connection ([`verify`], what the local emulator applies). One
//! signing function for both, so what the emulator accepts is what the
//! pusher sends, and both are `aws-sigv4`, the crate the AWS SDK signs with.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SigningInstructions, SigningSettings,
};
use aws_smithy_runtime_api::client::identity::Identity;
use hyper::HeaderMap;

use crate::BoxError;

/// The service API Gateway's Management API signs for.
pub const SERVICE: &str = "execute-api";
/// How far a request's `x-amz-date` may be from now: AWS denies a request
/// that does not reach it within five minutes of its time stamp
/// ("Signature expired: … (… - 5 min.)").
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Signs a request to the Management API at `time`: the headers to add
/// (`authorization`, `x-amz-date`, and `x-amz-security-token` when the
/// identity has a session token) and the signature. `headers` are the ones
/// to sign, `host` among them; `url` is the whole URL as sent, its path
/// already percent-encoded.
pub fn sign(
    identity: &Identity,
    region: &str,
    time: SystemTime,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(SigningInstructions, String), BoxError> {
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )?;
    Ok(aws_sigv4::http_request::sign(signable, &params)?.into_parts())
}

/// Why a Management API call was refused, as API Gateway words it.
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
    /// `x-amz-date` missing, malformed, or more than 5 minutes off.
    #[error("Signature expired or not yet current (x-amz-date must be within 5 minutes of now)")]
    Expired,
    /// Signed with a known key, but not this request.
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

/// `20261129T231400Z` (SigV4's `x-amz-date`) as a time.
pub fn amz_date(value: &str) -> Option<SystemTime> {
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

/// Checks a request's signature as API Gateway does, for `region` at
/// `now`: `method`, the path and query as received, its headers and body.
/// Form, scope and time are checked for every key; the signature itself
/// only for keys whose secret `secret_of` knows (the verifier cannot
/// recompute it otherwise), by signing the request again with the headers
/// it says it signed, at the time it says it signed.
pub fn verify(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    region: &str,
    now: SystemTime,
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<(), Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = parse(header("authorization").ok_or(Refusal::Missing)?)?;
    if authorization.service != SERVICE {
        return Err(Refusal::WrongService);
    }
    if authorization.region != region {
        return Err(Refusal::WrongRegion(authorization.region.to_owned()));
    }
    let signed_at = header("x-amz-date")
        .and_then(amz_date)
        .ok_or(Refusal::Expired)?;
    let skew = match now.duration_since(signed_at) {
        Ok(past) => past,
        Err(future) => future.duration(),
    };
    if skew > MAX_SKEW {
        return Err(Refusal::Expired);
    }
    let Some(secret) = secret_of(authorization.access_key) else {
        return Ok(());
    };
    // `sign` adds these two itself, from the time and the identity.
    let signed: Vec<(&str, &str)> = authorization
        .signed_headers
        .iter()
        .filter(|h| **h != "x-amz-date" && **h != "x-amz-security-token")
        .map(|h| Some((*h, header(h)?)))
        .collect::<Option<_>>()
        .ok_or(Refusal::Mismatch)?;
    let url = format!(
        "http://{}{path_and_query}",
        header("host").unwrap_or_default()
    );
    let identity = aws_credential_types::Credentials::new(
        authorization.access_key,
        secret,
        header("x-amz-security-token").map(str::to_owned),
        None,
        "sigv4-verify",
    )
    .into();
    match sign(&identity, region, signed_at, method, &url, &signed, body) {
        Ok((_, expected)) if expected == authorization.signature => Ok(()),
        _ => Err(Refusal::Mismatch),
    }
}
