//! Credentials for Google APIs: turns the `credentials` config string into the headers one
//! request needs (`Authorization: Bearer …` for Vertex, `x-goog-api-key` for the Gemini
//! Developer API), caching OAuth2 access tokens (spec §2).
//!
//! It owns parsing the setting, reading key files, the three token flows and the token
//! cache. It must not log, return or `Debug`-print a secret (private key, refresh token,
//! access token, API key), and only `Credentials::new`/`AuthEnv::from_process`/
//! `CredentialSource::parse` read env vars.
//!
//! The flows are implemented here rather than with `gcp_auth` or `google-cloud-auth`
//! because `gcp_auth` hard-codes `metadata.google.internal` (ignores `GCE_METADATA_HOST`)
//! and brings its own hyper client, while `google-cloud-auth` reads env vars deep inside
//! and pulls in the google-cloud-gax stack; a few hundred lines of documented protocol
//! on our existing reqwest + jsonwebtoken is smaller and testable against the emulator.

mod cache;
mod error;
mod flow;
mod key_file;
mod source;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

pub use error::AuthError;
pub use source::{AdcChoice, AuthEnv, CredentialSource, adc_lookup};

use cache::TokenCache;
use flow::MetadataServer;
use key_file::{AuthorizedUser, KeyFile, ServiceAccountKey};

const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-goog-api-key");
const USER_PROJECT_HEADER: HeaderName = HeaderName::from_static("x-goog-user-project");

/// A cheap-to-clone handle that produces auth headers and caches tokens.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    scheme: Scheme,
    /// Where the credentials came from, for `describe` ("adc: GOOGLE_APPLICATION_CREDENTIALS=…").
    origin: String,
    http: reqwest::Client,
    cache: TokenCache,
}

enum Scheme {
    None,
    ApiKey(SecretString),
    OAuth {
        flow: TokenFlow,
        quota_project: Option<HeaderValue>,
    },
}

enum TokenFlow {
    ServiceAccount(ServiceAccountKey),
    AuthorizedUser(AuthorizedUser),
    Metadata(MetadataServer),
}

impl Credentials {
    /// Resolves `source` now (reading and validating key files, so mistakes fail at
    /// start-up), consulting the process environment for ADC and `GCE_METADATA_HOST`.
    /// Fetches no token: the first `headers()` does.
    pub fn new(source: CredentialSource, http: reqwest::Client) -> Result<Self, AuthError> {
        Self::with_env(source, http, &AuthEnv::from_process())
    }

    /// Like [`Credentials::new`] with the environment given explicitly (tests, or a caller
    /// that pins `GCE_METADATA_HOST`).
    pub fn with_env(
        source: CredentialSource,
        http: reqwest::Client,
        env: &AuthEnv,
    ) -> Result<Self, AuthError> {
        let (scheme, origin) = match source {
            CredentialSource::None => (Scheme::None, "none".to_owned()),
            CredentialSource::ApiKey(key) => {
                api_key_header(&key)?;
                (Scheme::ApiKey(key), "env".to_owned())
            }
            CredentialSource::Metadata => (metadata_auth(env), "metadata".to_owned()),
            CredentialSource::ServiceAccountFile(path) => {
                let origin = format!("file {}", path.display());
                (file_auth(&path, "")?, origin)
            }
            CredentialSource::Adc => match adc_lookup(env, Path::is_file) {
                AdcChoice::EnvFile(path) => {
                    let auth = file_auth(&path, " (from GOOGLE_APPLICATION_CREDENTIALS)")?;
                    (
                        auth,
                        format!("adc: GOOGLE_APPLICATION_CREDENTIALS={}", path.display()),
                    )
                }
                AdcChoice::GcloudFile(path) => {
                    let origin = format!("adc: gcloud file {}", path.display());
                    (
                        file_auth(&path, " (gcloud application-default credentials)")?,
                        origin,
                    )
                }
                AdcChoice::Metadata => (metadata_auth(env), "adc: no credentials file".to_owned()),
            },
        };
        Ok(Self {
            inner: Arc::new(Inner {
                scheme,
                origin,
                http,
                cache: TokenCache::default(),
            }),
        })
    }

    /// Headers to add to one request: `("authorization", "Bearer …")` or
    /// `("x-goog-api-key", key)`; plus `("x-goog-user-project", quota_project)` when the
    /// credentials file carries `quota_project_id`. Values are marked sensitive.
    pub async fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, AuthError> {
        match &self.inner.scheme {
            Scheme::None => Ok(Vec::new()),
            Scheme::ApiKey(key) => Ok(vec![(API_KEY_HEADER, api_key_header(key)?)]),
            Scheme::OAuth {
                flow,
                quota_project,
            } => {
                let token = self.access_token(flow).await?;
                let mut bearer = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
                    .map_err(|_| AuthError::InvalidHeaderValue {
                        what: format!("the access token for {}", self.describe()),
                    })?;
                bearer.set_sensitive(true);
                let mut headers = vec![(AUTHORIZATION, bearer)];
                if let Some(project) = quota_project {
                    headers.push((USER_PROJECT_HEADER, project.clone()));
                }
                Ok(headers)
            }
        }
    }

    async fn access_token(&self, flow: &TokenFlow) -> Result<SecretString, AuthError> {
        let http = &self.inner.http;
        let (token, fetched) = self
            .inner
            .cache
            .get_or_fetch(|| async {
                tracing::debug!(credentials = %self.describe(), "fetching access token");
                let fetched = match flow {
                    TokenFlow::ServiceAccount(key) => flow::service_account(http, key).await,
                    TokenFlow::AuthorizedUser(user) => flow::authorized_user(http, user).await,
                    TokenFlow::Metadata(server) => flow::metadata(http, server).await,
                }?;
                Ok((fetched.access_token, fetched.expires_in))
            })
            .await?;
        if fetched {
            tracing::debug!(credentials = %self.describe(), "access token fetched");
        }
        Ok(token)
    }

    /// Called once after a 401: drop the cached token so the next `headers()` fetches a
    /// new one. (Several callers invalidating the same stale token cost at most a
    /// redundant fetch.)
    pub fn invalidate(&self) {
        self.inner.cache.invalidate();
    }

    /// Whether these are Gemini Developer API key credentials.
    pub fn is_api_key(&self) -> bool {
        matches!(self.inner.scheme, Scheme::ApiKey(_))
    }

    /// A one-line description for logs: the kind and, for service accounts, the
    /// `client_email`. Never contains a secret.
    pub fn describe(&self) -> String {
        let origin = &self.inner.origin;
        match &self.inner.scheme {
            Scheme::None => "no authentication".to_owned(),
            Scheme::ApiKey(_) => "API key".to_owned(),
            Scheme::OAuth {
                flow: TokenFlow::ServiceAccount(key),
                ..
            } => {
                format!("service account {} ({origin})", key.client_email)
            }
            Scheme::OAuth {
                flow: TokenFlow::AuthorizedUser(user),
                ..
            } => {
                format!(
                    "authorized user, OAuth client {} ({origin})",
                    user.client_id
                )
            }
            Scheme::OAuth {
                flow: TokenFlow::Metadata(server),
                ..
            } => {
                format!("metadata server {} ({origin})", server.primary())
            }
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("kind", &self.describe())
            .finish_non_exhaustive()
    }
}

fn api_key_header(key: &SecretString) -> Result<HeaderValue, AuthError> {
    let mut value =
        HeaderValue::from_str(key.expose_secret()).map_err(|_| AuthError::InvalidHeaderValue {
            what: "the API key".to_owned(),
        })?;
    value.set_sensitive(true);
    Ok(value)
}

fn metadata_auth(env: &AuthEnv) -> Scheme {
    let server = MetadataServer::new(env.gce_metadata_host.as_deref());
    Scheme::OAuth {
        flow: TokenFlow::Metadata(server),
        quota_project: None,
    }
}

fn file_auth(path: &Path, origin: &'static str) -> Result<Scheme, AuthError> {
    let file = key_file::load(path, origin)?;
    let quota_project = file
        .quota_project_id()
        .map(|p| {
            HeaderValue::from_str(p).map_err(|_| AuthError::InvalidHeaderValue {
                what: format!("quota_project_id in {}", path.display()),
            })
        })
        .transpose()?;
    let flow = match file {
        KeyFile::ServiceAccount(key) => TokenFlow::ServiceAccount(key),
        KeyFile::AuthorizedUser(user) => TokenFlow::AuthorizedUser(user),
    };
    Ok(Scheme::OAuth {
        flow,
        quota_project,
    })
}
