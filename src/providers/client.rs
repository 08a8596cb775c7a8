//! `VertexProvider` and `GeminiApiProvider`: resolve inputs → build the wire request →
//! send with credentials → `classify`. A 401 refreshes credentials once.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::catalog::Backend;
use crate::config::ProjectConfig;
use crate::job::JobSpec;

use super::auth::{CredentialSource, Credentials};
use super::endpoint::Target;
use super::error::{ProviderError, TransientKind, classify};
use super::inputs::InputResolver;
use super::response::ProviderOutput;
use super::wire::{self, WireRequest};

/// Something that runs one job against an image API.
pub trait ImageProvider: Send + Sync {
    /// Runs `spec` once: no retries here (the queue schedules them).
    fn call<'a>(
        &'a self,
        spec: &'a JobSpec,
    ) -> BoxFuture<'a, Result<ProviderOutput, ProviderError>>;
    /// Where requests go.
    fn target(&self) -> &Target;
}

/// Why a provider could not be constructed from its config.
#[derive(Debug, thiserror::Error)]
pub enum ProviderConfigError {
    /// The credentials could not be loaded.
    #[error("credentials: {0}")]
    Auth(#[from] super::auth::AuthError),
    /// The backend does not match the provider.
    #[error("{0}")]
    Backend(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(String),
}

/// The shared HTTP machinery of both providers.
struct GoogleClient {
    target: Target,
    http: reqwest::Client,
    credentials: Credentials,
    inputs: InputResolver,
}

/// The reqwest client every provider uses: rustls, HTTP/2 when offered, a deadline.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, ProviderConfigError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(256)
        .user_agent(concat!("imagegen/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ProviderConfigError::Http(e.to_string()))
}

fn transport_error(e: reqwest::Error) -> ProviderError {
    let kind = if e.is_timeout() {
        TransientKind::Timeout
    } else {
        TransientKind::Connection
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    ProviderError::Transient {
        kind,
        status: None,
        message,
        retry_after: None,
    }
}

impl GoogleClient {
    fn from_config(
        p: &ProjectConfig,
        timeout: Duration,
        inputs: InputResolver,
    ) -> Result<Self, ProviderConfigError> {
        let http = http_client(timeout)?;
        let source = CredentialSource::parse(&p.credentials)?;
        let credentials = Credentials::new(source, http.clone())?;
        Ok(GoogleClient {
            target: Target::from_config(p),
            inputs,
            http,
            credentials,
        })
    }

    fn new(
        target: Target,
        credentials: Credentials,
        http: reqwest::Client,
        inputs: InputResolver,
    ) -> Self {
        GoogleClient {
            target,
            inputs,
            http,
            credentials,
        }
    }

    async fn call(&self, spec: &JobSpec) -> Result<ProviderOutput, ProviderError> {
        let model = crate::catalog::lookup_or_infer(&spec.model);
        // Segmentation on a text model needs the image's size, so its input is inlined.
        let keep_gcs = self.target.backend == Backend::Vertex
            && model.is_none_or(|m| m.family != crate::catalog::Family::GeminiText);
        let limit = model.map_or(7_000_000, |m| m.max_inline_bytes);
        let resolved = self.inputs.resolve(spec, keep_gcs, limit).await?;
        let request =
            wire::build(&resolved, &self.target).map_err(|e| ProviderError::Permanent {
                status: 0,
                code: "INVALID_JOB".into(),
                message: e.to_string(),
            })?;
        match self.send(&request).await {
            Err(ProviderError::Unauthenticated { .. }) if !self.credentials.is_api_key() => {
                tracing::info!(credentials = %self.credentials.describe(), "401 from provider: refreshing credentials once");
                self.credentials.invalidate();
                self.send(&request).await
            }
            other => other,
        }
    }

    async fn send(&self, request: &WireRequest) -> Result<ProviderOutput, ProviderError> {
        // Unreachable or refusing alike: the worker holds the project and probes.
        let headers = self
            .credentials
            .headers()
            .await
            .map_err(|e| ProviderError::Credentials {
                message: e.to_string(),
            })?;
        let mut builder = self.http.post(&request.url).json(&request.body);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let response = builder.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let served_tier = response
            .headers()
            .get("x-gemini-service-tier")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = response.bytes().await.map_err(transport_error)?;
        let mut out = classify(status, retry_after.as_deref(), &body, request.reply)?;
        out.served_tier = served_tier;
        Ok(out)
    }
}

/// Declares a provider type over `GoogleClient` for one backend: `from_config` checks the
/// backend, `new` takes an explicit target and credentials, and `ImageProvider` forwards.
macro_rules! google_provider {
    ($(#[$doc:meta])* $name:ident, $backend:expr) => {
        $(#[$doc])*
        pub struct $name(GoogleClient);

        impl $name {
            /// From a project whose `backend` matches this provider.
            pub fn from_config(p: &ProjectConfig, timeout: Duration, inputs: InputResolver) -> Result<Self, ProviderConfigError> {
                if p.backend != $backend {
                    return Err(ProviderConfigError::Backend(format!(
                        "{} needs backend \"{}\", got \"{}\"",
                        stringify!($name),
                        $backend.as_str(),
                        p.backend.as_str()
                    )));
                }
                Ok($name(GoogleClient::from_config(p, timeout, inputs)?))
            }

            /// A provider for an explicit target and credentials (e.g. the embedded emulator).
            pub fn new(target: Target, credentials: Credentials, timeout: Duration, inputs: InputResolver) -> Result<Self, ProviderConfigError> {
                Ok($name(GoogleClient::new(target, credentials, http_client(timeout)?, inputs)))
            }
        }

        impl ImageProvider for $name {
            fn call<'a>(&'a self, spec: &'a JobSpec) -> BoxFuture<'a, Result<ProviderOutput, ProviderError>> {
                Box::pin(self.0.call(spec))
            }
            fn target(&self) -> &Target {
                &self.0.target
            }
        }
    };
}

google_provider!(
    /// Vertex AI: OAuth2 (or express-mode API key); every model family.
    VertexProvider,
    Backend::Vertex
);

google_provider!(
    /// The Gemini Developer API: `x-goog-api-key`; Gemini image models only.
    GeminiApiProvider,
    Backend::GeminiApi
);

/// The provider a project's config asks for.
pub fn from_config(
    p: &ProjectConfig,
    timeout: Duration,
    inputs: InputResolver,
) -> Result<Box<dyn ImageProvider>, ProviderConfigError> {
    Ok(match p.backend {
        Backend::Vertex => Box::new(VertexProvider::from_config(p, timeout, inputs)?),
        Backend::GeminiApi => Box::new(GeminiApiProvider::from_config(p, timeout, inputs)?),
    })
}
