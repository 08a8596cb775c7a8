//! Credentials (spec §2): the emulator mints service-account keys, runs an OAuth2
//! JWT-bearer token endpoint and a metadata-server stand-in, and checks bearer tokens
//! (Vertex) and API keys (Developer API, Vertex express mode) on every model call.
//!
//! Keeps only public keys and token expiries; it never logs tokens or keys.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::emulator::envelope::ApiError;
use crate::emulator::state::AppState;

/// Google's own token URI; assertions may name it as audience.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Minted keys and issued tokens.
#[derive(Default)]
pub struct AuthStore {
    inner: Mutex<AuthInner>,
}

#[derive(Default)]
struct AuthInner {
    accounts: HashMap<String, Account>,
    tokens: HashMap<String, Instant>,
}

#[derive(Clone)]
struct Account {
    client_email: String,
    key: DecodingKey,
}

/// Claims Google checks in a JWT-bearer assertion.
#[derive(Debug, Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<Value>,
    scope: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
}

/// A token-endpoint refusal: `{"error": kind, "error_description": text}`.
#[derive(Debug, Clone)]
pub struct OAuthError {
    /// HTTP status (400 or 401).
    pub status: u16,
    /// `invalid_grant`, `invalid_scope`, …
    pub kind: &'static str,
    /// Google's description.
    pub description: String,
}

fn grant_error(description: &str) -> OAuthError {
    OAuthError {
        status: 400,
        kind: "invalid_grant",
        description: description.into(),
    }
}

impl AuthStore {
    fn lock(&self) -> MutexGuard<'_, AuthInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a fresh access token valid for `ttl`.
    pub fn issue(&self, ttl: Duration) -> String {
        let token = format!("ya29.emu-{:032x}", rand::random::<u128>());
        self.lock()
            .tokens
            .insert(token.clone(), Instant::now() + ttl);
        token
    }

    /// Forgets every issued token (clients must fetch new ones).
    pub fn revoke_all(&self) -> usize {
        let mut inner = self.lock();
        let n = inner.tokens.len();
        inner.tokens.clear();
        n
    }

    /// `Some(true)` valid, `Some(false)` expired, `None` unknown.
    fn token_state(&self, token: &str) -> Option<bool> {
        self.lock()
            .tokens
            .get(token)
            .map(|exp| *exp > Instant::now())
    }
}

/// Mints an RSA-2048 service-account key and answers Google's key-file JSON.
pub fn mint_service_account(
    state: &AppState,
    project_id: &str,
    client_email: Option<&str>,
) -> Result<Value, ApiError> {
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .map_err(|e| ApiError::new(500, format!("key generation failed: {e}")))?;
    let pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| ApiError::new(500, format!("key encoding failed: {e}")))?;
    let public = private.to_public_key();
    let key =
        DecodingKey::from_rsa_raw_components(&public.n().to_bytes_be(), &public.e().to_bytes_be());
    let kid = format!("{:040x}", rand::random::<u128>());
    let client_id = format!("1{:020}", rand::random::<u64>());
    let email = client_email
        .map(str::to_string)
        .unwrap_or_else(|| format!("emulator@{project_id}.iam.gserviceaccount.com"));
    state.auth.lock().accounts.insert(
        kid.clone(),
        Account {
            client_email: email.clone(),
            key,
        },
    );
    Ok(json!({
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": kid,
        "private_key": pem.as_str(),
        "client_email": email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{}/token", state.base_url()),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{}", email.replace('@', "%40")),
        "universe_domain": "googleapis.com",
    }))
}

/// Handles a `POST /token` form body; answers the access-token JSON or an OAuth error.
pub fn exchange(state: &AppState, form: &[u8]) -> Result<Value, OAuthError> {
    let pairs: HashMap<String, String> = url::form_urlencoded::parse(form).into_owned().collect();
    let grant = pairs.get("grant_type").map(String::as_str).unwrap_or("");
    if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return Err(OAuthError {
            status: 400,
            kind: "unsupported_grant_type",
            description: format!("Invalid grant_type: {grant}"),
        });
    }
    let assertion = pairs.get("assertion").map(String::as_str).unwrap_or("");
    let claims = verify_assertion(state, assertion)?;
    check_claims(state, &claims)?;
    let ttl = state.scenario().token_ttl_s;
    let token = state.auth.issue(Duration::from_secs(ttl));
    Ok(json!({"access_token": token, "expires_in": ttl, "token_type": "Bearer"}))
}

fn verify_assertion(state: &AppState, assertion: &str) -> Result<Claims, OAuthError> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| grant_error("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."))?;
    if header.alg != Algorithm::RS256 {
        return Err(grant_error("Invalid JWT Signature."));
    }
    let unverified: Claims = jsonwebtoken::dangerous::insecure_decode(assertion)
        .map(|d| d.claims)
        .map_err(|_| grant_error("Invalid JWT Signature."))?;
    let account = {
        let inner = state.auth.lock();
        header
            .kid
            .as_deref()
            .and_then(|kid| inner.accounts.get(kid))
            .or_else(|| {
                let iss = unverified.iss.as_deref()?;
                inner.accounts.values().find(|a| a.client_email == iss)
            })
            .cloned()
    };
    let Some(account) = account else {
        return Err(grant_error("Invalid grant: account not found"));
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Claims>(assertion, &account.key, &validation)
        .map(|d| d.claims)
        .map_err(|_| grant_error("Invalid JWT Signature."))
}

fn check_claims(state: &AppState, claims: &Claims) -> Result<(), OAuthError> {
    let own = format!("{}/token", state.base_url());
    let aud_ok = match &claims.aud {
        Some(Value::String(a)) => a == &own || a == GOOGLE_TOKEN_URI,
        Some(Value::Array(list)) => list.iter().any(|a| a == &own || a == GOOGLE_TOKEN_URI),
        _ => false,
    };
    if !aud_ok {
        return Err(grant_error(&format!(
            "Invalid JWT: Failed audience check. The right audience is {own}"
        )));
    }
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let timeframe = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
    let (Some(iat), Some(exp)) = (claims.iat, claims.exp) else {
        return Err(grant_error(timeframe));
    };
    if exp - iat > 3600 || exp <= now || iat > now + 300 {
        return Err(grant_error(timeframe));
    }
    if claims.scope.as_deref().is_none_or(|s| s.trim().is_empty()) {
        return Err(OAuthError {
            status: 400,
            kind: "invalid_scope",
            description: "Invalid OAuth scope or ID token audience provided.".into(),
        });
    }
    Ok(())
}

/// Checks `Authorization: Bearer` on a Vertex project path.
pub fn check_bearer(
    state: &AppState,
    headers: &HeaderMap,
    api_method: &str,
) -> Result<(), ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = header.and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .map(str::trim)
    });
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(unauthenticated(
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            "CREDENTIALS_MISSING",
            api_method,
        ));
    };
    if state.scenario().static_tokens.iter().any(|t| t == token) {
        return Ok(());
    }
    match state.auth.token_state(token) {
        Some(true) => Ok(()),
        Some(false) => Err(unauthenticated(
            INVALID_CREDENTIALS,
            "ACCESS_TOKEN_EXPIRED",
            api_method,
        )),
        None => Err(unauthenticated(
            INVALID_CREDENTIALS,
            "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            api_method,
        )),
    }
}

const INVALID_CREDENTIALS: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

fn unauthenticated(message: &str, reason: &str, api_method: &str) -> ApiError {
    ApiError::new(401, message).with_detail(
        "ErrorInfo",
        json!({"reason": reason, "domain": "googleapis.com",
               "metadata": {"service": "aiplatform.googleapis.com", "method": api_method}}),
    )
}

/// Checks the API key (`x-goog-api-key` or `?key=`) and returns the project it maps to.
pub fn check_api_key(
    state: &AppState,
    headers: &HeaderMap,
    query_key: Option<&str>,
    service: &str,
) -> Result<String, ApiError> {
    let key = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or(query_key)
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        return Err(ApiError::new(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        ));
    };
    let scenario = state.scenario();
    if scenario.api_keys.is_empty() {
        return Ok("default".into());
    }
    match scenario.api_keys.get(key) {
        Some(project) => Ok(project.clone()),
        None => {
            let msg = "API key not valid. Please pass a valid API key.";
            Err(ApiError::new(400, msg)
                .with_detail(
                    "ErrorInfo",
                    json!({"reason": "API_KEY_INVALID", "domain": "googleapis.com",
                           "metadata": {"service": service}}),
                )
                .with_detail(
                    "LocalizedMessage",
                    json!({"locale": "en-US", "message": msg}),
                ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::control::scenario::Scenario;

    #[test]
    fn issued_tokens_pass_and_revoked_ones_fail() {
        let state = AppState::new("127.0.0.1:1".parse().expect("addr"), Scenario::default());
        let token = state.auth.issue(Duration::from_secs(60));
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        assert!(check_bearer(&state, &headers, "m").is_ok());
        state.auth.revoke_all();
        assert_eq!(check_bearer(&state, &headers, "m").unwrap_err().code, 401);
    }
}
