//! `AuthError`: every way obtaining credentials can fail, worded so an operator can act
//! on it. Messages name the setting, file, field, env var or endpoint involved and never
//! carry a secret (private key, refresh token, access token, API key).

use std::path::PathBuf;

/// Why credentials could not be parsed, loaded or turned into request headers.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The `credentials` setting is blank.
    #[error(
        "credentials setting is empty; use \"adc\", \"metadata\", \"none\", \"env:VAR\" or a key file path"
    )]
    EmptySetting,

    /// `env:` with nothing after it.
    #[error("credentials \"env:\" names no environment variable; write \"env:VAR\"")]
    EmptyEnvVarName,

    /// `env:VAR` where VAR is unset or blank.
    #[error("credentials \"env:{var}\": environment variable {var} is unset or empty")]
    MissingEnvVar {
        /// The variable that should hold the API key.
        var: String,
    },

    /// A credentials file could not be read.
    #[error("cannot read credentials file {path}{origin}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Where the path came from, e.g. " (from GOOGLE_APPLICATION_CREDENTIALS)", or "".
        origin: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A credentials file is not JSON (serde_json's syntax errors carry positions only).
    #[error("credentials file {path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// A required field is absent, empty or not a string.
    #[error("credentials file {path} lacks the string field \"{field}\"")]
    MissingField {
        /// The file.
        path: PathBuf,
        /// The JSON field name.
        field: &'static str,
    },

    /// A credentials file of a kind this module does not implement.
    #[error(
        "credentials file {path} has type \"{kind}\"; supported types are \"service_account\" and \"authorized_user\""
    )]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// The file's `type` field.
        kind: String,
    },

    /// `private_key` is not an RSA private key in PEM.
    #[error(
        "credentials file {path}: \"private_key\" is not an RSA private key in PEM (PKCS#8 or PKCS#1)"
    )]
    InvalidPrivateKey {
        /// The file.
        path: PathBuf,
    },

    /// `token_uri` is not an http(s) URL.
    #[error("credentials file {path}: \"token_uri\" {uri:?} is not an http(s) URL")]
    InvalidTokenUri {
        /// The file.
        path: PathBuf,
        /// The offending value (a URL, not a secret).
        uri: String,
    },

    /// Building the RS256 assertion failed.
    #[error("signing the token request for {client_email} failed: {reason}")]
    Sign {
        /// The service account.
        client_email: String,
        /// jsonwebtoken's error kind.
        reason: String,
    },

    /// The token endpoint could not be reached (connect, timeout, TLS, reading the body).
    #[error("token request to {endpoint} failed: {source}")]
    Transport {
        /// The token endpoint (no query string).
        endpoint: String,
        /// The transport error, URL stripped.
        #[source]
        source: reqwest::Error,
    },

    /// The token endpoint answered with an error status.
    #[error("token endpoint {endpoint} refused the request ({status}): {error}{}", describe_suffix(.description))]
    Rejected {
        /// The token endpoint (no query string).
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// OAuth2 `error` (e.g. `invalid_grant`), or a short excerpt of a non-OAuth body.
        error: String,
        /// OAuth2 `error_description`, if given.
        description: Option<String>,
    },

    /// The token endpoint answered 2xx with a body that is not a token response.
    #[error("token endpoint {endpoint} answered {status} without a usable token: {reason}")]
    BadResponse {
        /// The token endpoint (no query string).
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// What was wrong (never the body's secret fields).
        reason: String,
    },

    /// A value destined for a header has bytes HTTP forbids.
    #[error("{what} contains characters that are not allowed in an HTTP header")]
    InvalidHeaderValue {
        /// Which value ("the API key", "the access token from …", "quota_project_id in …").
        what: String,
    },
}

fn describe_suffix(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl AuthError {
    /// The OAuth2 `error` code the token endpoint answered (`invalid_grant`, …), if any.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            AuthError::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: transport failures and 408/429/5xx from the
    /// token endpoint. Configuration errors and refused grants are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            AuthError::Transport { .. } => true,
            AuthError::Rejected { status, .. } | AuthError::BadResponse { status, .. } => {
                *status == 408 || *status == 429 || *status >= 500
            }
            AuthError::EmptySetting
            | AuthError::EmptyEnvVarName
            | AuthError::MissingEnvVar { .. }
            | AuthError::ReadFile { .. }
            | AuthError::Json { .. }
            | AuthError::MissingField { .. }
            | AuthError::UnsupportedType { .. }
            | AuthError::InvalidPrivateKey { .. }
            | AuthError::InvalidTokenUri { .. }
            | AuthError::Sign { .. }
            | AuthError::InvalidHeaderValue { .. } => false,
        }
    }
}
