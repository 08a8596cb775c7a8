//! `providers::auth` over real HTTP: service-account keys, token caching, 401 recovery,
//! refused grants, the metadata server, ADC lookup and API keys.
//!
//! `Backend` is the product's emulator (`imagegen::emulator`), driven over HTTP through its
//! auth contract: `/emulator/service-accounts`, `/token`, the metadata token route,
//! `/emulator/tokens/revoke`, `/emulator/stats` `tokens_issued`, Bearer-checked Vertex
//! routes. The emulator has no refresh-token grant, so the `authorized_user` test adds a
//! small endpoint of its own (`refresh_endpoint`).

use std::path::{Path, PathBuf};

use imagegen::emulator::{EmulatorHandle, Scenario};
use imagegen::providers::auth::{
    AdcChoice, AuthEnv, AuthError, CredentialSource, Credentials, adc_lookup,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

mod refresh_endpoint;

const GENERATE: &str = "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash-image:generateContent";

struct Backend {
    base_url: String,
    http: reqwest::Client,
    _emulator: EmulatorHandle,
}

impl Backend {
    async fn spawn() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let emulator = imagegen::emulator::spawn(listener, Scenario::default())
            .await
            .unwrap();
        Self {
            base_url: emulator.base_url(),
            http: reqwest::Client::new(),
            _emulator: emulator,
        }
    }

    fn host_port(&self) -> &str {
        self.base_url.trim_start_matches("http://")
    }

    /// A fresh service-account key JSON whose `token_uri` is this backend's `/token`.
    async fn service_account_key(&self, project: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/emulator/service-accounts", self.base_url))
            .json(&json!({ "project_id": project }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn tokens_issued(&self) -> u64 {
        let stats: Value = self
            .http
            .get(format!("{}/emulator/stats", self.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["tokens_issued"]
            .as_u64()
            .expect("stats.tokens_issued")
    }

    async fn revoke_tokens(&self) {
        let response = self
            .http
            .post(format!("{}/emulator/tokens/revoke", self.base_url))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// One authenticated generateContent call; returns its status.
    async fn generate(&self, credentials: &Credentials) -> StatusCode {
        let mut request = self
            .http
            .post(format!("{}{GENERATE}", self.base_url))
            .json(&json!({
                "contents": [{"role": "user", "parts": [{"text": "a lighthouse at dusk"}]}],
                "generationConfig": {"responseModalities": ["IMAGE"]},
            }));
        for (name, value) in credentials.headers().await.unwrap() {
            request = request.header(name, value);
        }
        request.send().await.unwrap().status()
    }
}

fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path
}

fn credentials_from_file(path: &Path) -> Credentials {
    let source = CredentialSource::parse(path.to_str().unwrap()).unwrap();
    Credentials::with_env(source, reqwest::Client::new(), &AuthEnv::default()).unwrap()
}

fn bearer(headers: &[(reqwest::header::HeaderName, reqwest::header::HeaderValue)]) -> String {
    let (_, value) = headers
        .iter()
        .find(|(name, _)| name == reqwest::header::AUTHORIZATION)
        .expect("authorization header");
    value.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn service_account_key_file_authenticates_generate_content() {
    let backend = Backend::spawn().await;
    let key = backend.service_account_key("p").await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials_from_file(&write_json(dir.path(), "sa.json", &key));

    assert!(!credentials.is_api_key());
    assert!(
        credentials
            .describe()
            .contains(key["client_email"].as_str().unwrap())
    );
    assert_eq!(backend.generate(&credentials).await, StatusCode::OK);
    assert_eq!(backend.tokens_issued().await, 1);
}

#[tokio::test]
async fn token_is_reused_until_invalidated() {
    let backend = Backend::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let key = backend.service_account_key("p").await;
    let credentials = credentials_from_file(&write_json(dir.path(), "sa.json", &key));

    let first = bearer(&credentials.headers().await.unwrap());
    let second = bearer(&credentials.clone().headers().await.unwrap());
    assert_eq!(first, second);
    assert_eq!(
        backend.tokens_issued().await,
        1,
        "second headers() must not hit /token"
    );
}

#[tokio::test]
async fn concurrent_callers_share_a_single_token_fetch() {
    let backend = Backend::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let key = backend.service_account_key("p").await;
    let credentials = credentials_from_file(&write_json(dir.path(), "sa.json", &key));

    let calls = (0..8).map(|_| {
        let credentials = credentials.clone();
        tokio::spawn(async move { bearer(&credentials.headers().await.unwrap()) })
    });
    let tokens: Vec<String> = futures::future::try_join_all(calls).await.unwrap();
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(backend.tokens_issued().await, 1);
}

#[tokio::test]
async fn after_revocation_a_401_then_invalidate_gets_a_fresh_token() {
    let backend = Backend::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let key = backend.service_account_key("p").await;
    let credentials = credentials_from_file(&write_json(dir.path(), "sa.json", &key));
    assert_eq!(backend.generate(&credentials).await, StatusCode::OK);
    let old = bearer(&credentials.headers().await.unwrap());

    backend.revoke_tokens().await;
    assert_eq!(
        backend.generate(&credentials).await,
        StatusCode::UNAUTHORIZED
    );
    credentials.invalidate();
    assert_eq!(backend.generate(&credentials).await, StatusCode::OK);

    assert_ne!(bearer(&credentials.headers().await.unwrap()), old);
    assert_eq!(backend.tokens_issued().await, 2);
}

#[tokio::test]
async fn key_signed_with_another_private_key_is_refused_with_invalid_grant() {
    let backend = Backend::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let mut key = backend.service_account_key("p").await;
    let other = backend.service_account_key("p").await;
    key["private_key"] = other["private_key"].clone();
    let credentials = credentials_from_file(&write_json(dir.path(), "forged.json", &key));

    let err = credentials.headers().await.unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_grant"), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(
        message.contains(&format!("{}/token", backend.base_url)),
        "{message}"
    );
    assert!(!message.contains("PRIVATE KEY") && !format!("{err:?}").contains("PRIVATE KEY"));
    assert!(!err.is_retryable());
    assert_eq!(backend.tokens_issued().await, 0);
}

#[tokio::test]
async fn metadata_source_uses_the_given_gce_metadata_host() {
    let backend = Backend::spawn().await;
    let env = AuthEnv {
        gce_metadata_host: Some(backend.host_port().to_owned()),
        ..AuthEnv::default()
    };
    let credentials =
        Credentials::with_env(CredentialSource::Metadata, reqwest::Client::new(), &env).unwrap();

    assert!(credentials.describe().contains(backend.host_port()));
    assert_eq!(backend.generate(&credentials).await, StatusCode::OK);
    assert_eq!(backend.generate(&credentials).await, StatusCode::OK);
    assert_eq!(backend.tokens_issued().await, 1);
}

#[tokio::test]
async fn adc_without_credential_files_falls_back_to_the_metadata_server() {
    let backend = Backend::spawn().await;
    let empty_home = tempfile::tempdir().unwrap();
    let env = AuthEnv {
        home: Some(empty_home.path().to_owned()),
        gce_metadata_host: Some(backend.host_port().to_owned()),
        ..AuthEnv::default()
    };
    let credentials =
        Credentials::with_env(CredentialSource::Adc, reqwest::Client::new(), &env).unwrap();
    assert!(
        credentials.describe().starts_with("metadata server"),
        "{}",
        credentials.describe()
    );
    assert_eq!(backend.generate(&credentials).await, StatusCode::OK);
}

#[tokio::test]
async fn adc_prefers_google_application_credentials_over_gcloud_file() {
    let backend = Backend::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let key = backend.service_account_key("p").await;
    let key_path = write_json(dir.path(), "sa.json", &key);
    let gcloud_dir = dir.path().join("gcloud");
    std::fs::create_dir(&gcloud_dir).unwrap();
    write_json(
        &gcloud_dir,
        "application_default_credentials.json",
        &authorized_user_json("http://unused.invalid/token", "r"),
    );
    let env = AuthEnv {
        google_application_credentials: Some(key_path.clone()),
        cloudsdk_config: Some(gcloud_dir.clone()),
        ..AuthEnv::default()
    };

    assert_eq!(
        adc_lookup(&env, Path::is_file),
        AdcChoice::EnvFile(key_path)
    );
    let credentials =
        Credentials::with_env(CredentialSource::Adc, reqwest::Client::new(), &env).unwrap();
    assert!(
        credentials
            .describe()
            .contains("GOOGLE_APPLICATION_CREDENTIALS")
    );
    assert_eq!(backend.generate(&credentials).await, StatusCode::OK);
}

#[test]
fn adc_lookup_order_is_env_file_then_gcloud_file_then_metadata() {
    let gcloud = PathBuf::from("/cfg/application_default_credentials.json");
    let all = AuthEnv {
        google_application_credentials: Some("/keys/sa.json".into()),
        cloudsdk_config: Some("/cfg".into()),
        home: Some("/home/u".into()),
        gce_metadata_host: None,
    };
    let exists = |p: &Path| p == gcloud;
    assert_eq!(
        adc_lookup(&all, exists),
        AdcChoice::EnvFile("/keys/sa.json".into())
    );
    // The env file wins even when missing, so the error names it.
    assert_eq!(
        adc_lookup(&all, |_| false),
        AdcChoice::EnvFile("/keys/sa.json".into())
    );

    let no_env_file = AuthEnv {
        google_application_credentials: None,
        ..all.clone()
    };
    assert_eq!(
        adc_lookup(&no_env_file, exists),
        AdcChoice::GcloudFile(gcloud.clone())
    );
    assert_eq!(adc_lookup(&no_env_file, |_| false), AdcChoice::Metadata);

    let home_only = AuthEnv {
        home: Some("/home/u".into()),
        ..AuthEnv::default()
    };
    let home_file = Path::new("/home/u/.config/gcloud/application_default_credentials.json");
    assert_eq!(
        adc_lookup(&home_only, |p| p == home_file),
        AdcChoice::GcloudFile(home_file.to_owned())
    );
    assert_eq!(
        adc_lookup(&AuthEnv::default(), |_| true),
        AdcChoice::Metadata
    );
}

#[test]
fn adc_with_missing_google_application_credentials_file_fails_at_start_up() {
    let env = AuthEnv {
        google_application_credentials: Some("/nonexistent/imagegen-sa.json".into()),
        ..AuthEnv::default()
    };
    let err =
        Credentials::with_env(CredentialSource::Adc, reqwest::Client::new(), &env).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("/nonexistent/imagegen-sa.json")
            && message.contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{message}"
    );
}

#[test]
fn key_file_missing_a_field_fails_at_start_up_naming_path_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_json(
        dir.path(),
        "partial.json",
        &json!({"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com"}),
    );
    let source = CredentialSource::parse(&format!("file:{}", path.display())).unwrap();
    let err =
        Credentials::with_env(source, reqwest::Client::new(), &AuthEnv::default()).unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::MissingField {
                field: "private_key",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));
}

fn authorized_user_json(token_uri: &str, refresh_token: &str) -> Value {
    json!({
        "type": "authorized_user",
        "client_id": "cid.apps.googleusercontent.com",
        "client_secret": refresh_endpoint::CLIENT_SECRET,
        "refresh_token": refresh_token,
        "quota_project_id": "billing-project",
        "token_uri": token_uri,
    })
}

#[tokio::test]
async fn gcloud_authorized_user_refreshes_and_sends_quota_project() {
    let backend = Backend::spawn().await;
    let token_uri = refresh_endpoint::spawn(backend.base_url.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let adc = authorized_user_json(&token_uri, refresh_endpoint::REFRESH_TOKEN);
    write_json(dir.path(), "application_default_credentials.json", &adc);
    let env = AuthEnv {
        cloudsdk_config: Some(dir.path().to_owned()),
        ..AuthEnv::default()
    };
    let credentials =
        Credentials::with_env(CredentialSource::Adc, reqwest::Client::new(), &env).unwrap();

    let headers = credentials.headers().await.unwrap();
    let quota = headers
        .iter()
        .find(|(n, _)| n == "x-goog-user-project")
        .map(|(_, v)| v);
    assert_eq!(quota.and_then(|v| v.to_str().ok()), Some("billing-project"));
    assert_eq!(backend.generate(&credentials).await, StatusCode::OK);
    assert_eq!(backend.tokens_issued().await, 1);
    let shown = format!("{credentials:?} {}", credentials.describe());
    assert!(
        !shown.contains(refresh_endpoint::REFRESH_TOKEN)
            && !shown.contains(refresh_endpoint::CLIENT_SECRET),
        "{shown}"
    );
}

#[tokio::test]
async fn refused_refresh_token_surfaces_invalid_grant() {
    let backend = Backend::spawn().await;
    let token_uri = refresh_endpoint::spawn(backend.base_url.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let adc = authorized_user_json(&token_uri, "1//stale-refresh-token");
    let path = write_json(dir.path(), "adc.json", &adc);

    let err = credentials_from_file(&path).headers().await.unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_grant"), "{err:?}");
    assert!(!err.to_string().contains("stale-refresh-token"), "{err}");
}

#[tokio::test]
async fn api_key_goes_in_x_goog_api_key_and_never_in_debug() {
    let secret = "AIzaSyTEST-never-log-me";
    let source = CredentialSource::parse_with("env:GEMINI_API_KEY", |var| {
        (var == "GEMINI_API_KEY").then(|| secret.to_owned())
    })
    .unwrap();
    let credentials =
        Credentials::with_env(source, reqwest::Client::new(), &AuthEnv::default()).unwrap();

    assert!(credentials.is_api_key());
    let headers = credentials.headers().await.unwrap();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0, "x-goog-api-key");
    assert_eq!(headers[0].1.to_str().unwrap(), secret);
    assert!(headers[0].1.is_sensitive());
    for shown in [
        format!("{credentials:?}"),
        credentials.describe(),
        format!("{headers:?}"),
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[tokio::test]
async fn none_source_sends_no_auth_headers() {
    let credentials = Credentials::with_env(
        CredentialSource::None,
        reqwest::Client::new(),
        &AuthEnv::default(),
    )
    .unwrap();
    assert!(credentials.headers().await.unwrap().is_empty());
    assert!(!credentials.is_api_key());
}
