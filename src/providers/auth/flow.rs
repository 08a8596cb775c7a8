//! The three token flows of spec §2.1 over HTTP: service-account jwt-bearer grant,
//! `authorized_user` refresh-token grant, and the metadata server. Each returns one fresh
//! token; caching is `cache.rs`'s job. Reads no env vars (the metadata host is passed in).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::AuthError;
use super::key_file::{AuthorizedUser, CLOUD_PLATFORM_SCOPE, ServiceAccountKey};

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Bound on one token request: a hung endpoint must not hold the single-flight lock forever.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The metadata server is link-local: if it has not answered by then it is not there.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime assumed when a response omits `expires_in`.
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);
const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// Tried when the default host name does not resolve (as google-auth does).
const METADATA_IP: &str = "169.254.169.254";
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// An access token and how long the issuer says it lives.
pub(crate) struct FetchedToken {
    pub(crate) access_token: SecretString,
    pub(crate) expires_in: Duration,
}

/// The metadata server to ask: `GCE_METADATA_HOST` if set, else the default name then IP.
pub(crate) struct MetadataServer {
    bases: Vec<String>,
}

impl MetadataServer {
    /// `host` is `GCE_METADATA_HOST` (`host`, `host:port`, or a full `http://…` base).
    pub(crate) fn new(host: Option<&str>) -> Self {
        let base = |h: &str| {
            let h = h.trim().trim_end_matches('/');
            if h.starts_with("http://") || h.starts_with("https://") {
                h.to_owned()
            } else {
                format!("http://{h}")
            }
        };
        let bases = match host {
            Some(h) => vec![base(h)],
            None => vec![base(DEFAULT_METADATA_HOST), base(METADATA_IP)],
        };
        Self { bases }
    }

    /// The base URL tried first, for logs.
    pub(crate) fn primary(&self) -> &str {
        &self.bases[0]
    }
}

/// Exchanges a signed assertion for an access token at the key file's `token_uri`.
pub(crate) async fn service_account(
    http: &reqwest::Client,
    key: &ServiceAccountKey,
) -> Result<FetchedToken, AuthError> {
    let assertion = key.assertion(chrono::Utc::now().timestamp())?;
    let form = [
        ("grant_type", JWT_BEARER_GRANT),
        ("assertion", assertion.expose_secret()),
    ];
    let request = http.post(&key.token_uri).form(&form);
    send(&key.token_uri, request, TOKEN_TIMEOUT).await
}

/// Exchanges a gcloud refresh token for an access token.
pub(crate) async fn authorized_user(
    http: &reqwest::Client,
    user: &AuthorizedUser,
) -> Result<FetchedToken, AuthError> {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", user.client_id.as_str()),
        ("client_secret", user.client_secret.expose_secret()),
        ("refresh_token", user.refresh_token.expose_secret()),
    ];
    let request = http.post(&user.token_uri).form(&form);
    send(&user.token_uri, request, TOKEN_TIMEOUT).await
}

/// Asks the metadata server for the default service account's token.
pub(crate) async fn metadata(
    http: &reqwest::Client,
    server: &MetadataServer,
) -> Result<FetchedToken, AuthError> {
    let mut last_error = None;
    for base in &server.bases {
        let endpoint = format!("{base}{METADATA_TOKEN_PATH}");
        let request = http
            .get(&endpoint)
            .query(&[("scopes", CLOUD_PLATFORM_SCOPE)])
            .header("metadata-flavor", "Google");
        match send(&endpoint, request, METADATA_TIMEOUT).await {
            Err(e @ AuthError::Transport { .. }) => last_error = Some(e),
            other => return other,
        }
    }
    Err(last_error.expect("MetadataServer always has at least one base"))
}

async fn send(
    endpoint: &str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<FetchedToken, AuthError> {
    let transport = |source: reqwest::Error| AuthError::Transport {
        endpoint: endpoint.to_owned(),
        source: source.without_url(),
    };
    let response = request.timeout(timeout).send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(transport)?;
    if (200..300).contains(&status) {
        parse_token(endpoint, status, &body)
    } else {
        Err(rejection(endpoint, status, &body))
    }
}

/// Reads `{access_token, expires_in}`; error reasons never quote the body.
pub(crate) fn parse_token(
    endpoint: &str,
    status: u16,
    body: &[u8],
) -> Result<FetchedToken, AuthError> {
    let bad = |reason: &str| AuthError::BadResponse {
        endpoint: endpoint.to_owned(),
        status,
        reason: reason.to_owned(),
    };
    let value: Value = serde_json::from_slice(body).map_err(|_| bad("body is not JSON"))?;
    let access_token = match value.get("access_token") {
        Some(Value::String(t)) if !t.is_empty() => SecretString::from(t.as_str()),
        _ => return Err(bad("no \"access_token\" string")),
    };
    let expires_in = match value.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_EXPIRES_IN,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .map(Duration::from_secs)
            .ok_or_else(|| bad("\"expires_in\" is not a number of seconds"))?,
    };
    Ok(FetchedToken {
        access_token,
        expires_in,
    })
}

/// Maps an error answer to `Rejected`, keeping OAuth2 `error`/`error_description` (or a
/// Google JSON error's `status`/`message`, or a short excerpt of a plain-text body).
pub(crate) fn rejection(endpoint: &str, status: u16, body: &[u8]) -> AuthError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let (error, description) = match value.as_ref().and_then(|v| v.get("error")) {
        Some(Value::String(e)) => (
            e.clone(),
            text(value.as_ref().and_then(|v| v.get("error_description"))),
        ),
        Some(obj @ Value::Object(_)) => (
            text(obj.get("status")).unwrap_or_else(|| format!("http_{status}")),
            text(obj.get("message")),
        ),
        _ => (format!("http_{status}"), excerpt(body)),
    };
    AuthError::Rejected {
        endpoint: endpoint.to_owned(),
        status,
        error,
        description,
    }
}

fn excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!line.is_empty()).then(|| line.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "http://127.0.0.1:1/token";

    #[test]
    fn parses_token_with_numeric_or_string_or_missing_expiry() {
        let t = parse_token(EP, 200, br#"{"access_token":"ya29.x","expires_in":3599}"#).unwrap();
        assert_eq!(
            (t.access_token.expose_secret(), t.expires_in),
            ("ya29.x", Duration::from_secs(3599))
        );
        let t = parse_token(EP, 200, br#"{"access_token":"a","expires_in":"120"}"#).unwrap();
        assert_eq!(t.expires_in, Duration::from_secs(120));
        let t = parse_token(EP, 200, br#"{"access_token":"a"}"#).unwrap();
        assert_eq!(t.expires_in, DEFAULT_EXPIRES_IN);
    }

    #[test]
    fn bad_token_body_is_reported_without_quoting_it() {
        let err = parse_token(EP, 200, br#"{"token":"ya29.SECRET"}"#)
            .err()
            .unwrap();
        assert!(matches!(err, AuthError::BadResponse { .. }));
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn oauth_error_body_keeps_error_and_description() {
        let body = br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
        let err = rejection(EP, 400, body);
        assert_eq!(err.oauth_error(), Some("invalid_grant"));
        let msg = err.to_string();
        assert!(
            msg.contains("invalid_grant")
                && msg.contains("Invalid JWT Signature.")
                && msg.contains(EP)
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn google_json_error_and_plain_text_bodies_are_summarised() {
        let err = rejection(
            EP,
            503,
            br#"{"error":{"code":503,"message":"backend down","status":"UNAVAILABLE"}}"#,
        );
        assert_eq!(err.oauth_error(), Some("UNAVAILABLE"));
        assert!(err.to_string().contains("backend down") && err.is_retryable());
        let err = rejection(EP, 404, b"Not Found\n");
        assert_eq!(err.oauth_error(), Some("http_404"));
        assert!(err.to_string().contains("Not Found"));
    }

    #[test]
    fn metadata_host_forms() {
        assert_eq!(
            MetadataServer::new(Some("127.0.0.1:8080")).bases,
            ["http://127.0.0.1:8080"]
        );
        assert_eq!(
            MetadataServer::new(Some("http://h:1/")).bases,
            ["http://h:1"]
        );
        assert_eq!(
            MetadataServer::new(None).bases,
            ["http://metadata.google.internal", "http://169.254.169.254"]
        );
    }
}
