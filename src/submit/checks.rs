//! The submit-time half of the SSRF guard for input images: what can be refused on
//! the producer's machine is refused there — a literal address in a refused range, or a
//! name that resolves only to refused addresses here — with the line and field, before
//! anything is enqueued. The worker checks again when it connects (its DNS may differ).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::job::JobSpec;
use crate::job::image::ImageSource;
use crate::netguard::{NetPolicy, UrlError};

/// Distinct hosts whose answers are remembered during one submit.
const CACHED_HOSTS: usize = 10_000;

/// Checks of the http(s) image URLs of job specs.
#[derive(Debug, Clone, Default)]
pub struct UrlChecks {
    policy: Option<Arc<NetPolicy>>,
    hosts: Arc<Mutex<HashMap<String, Result<(), String>>>>,
    /// The producer is remote (the HTTP API): a path names nothing of its own.
    remote: bool,
}

impl UrlChecks {
    /// No checks (tools that know their inputs).
    pub fn none() -> Self {
        Self::default()
    }

    /// Checks against `policy`.
    pub fn new(policy: NetPolicy) -> Self {
        UrlChecks {
            policy: Some(Arc::new(policy)),
            hosts: Arc::default(),
            remote: false,
        }
    }

    /// The same, refusing local paths: the producer is remote (the HTTP API), so a
    /// path would name a file of the server's.
    pub fn remote_only(mut self) -> Self {
        self.remote = true;
        self
    }

    /// Refuses the first image URL of `spec` the policy refuses, naming its field.
    pub async fn check(&self, spec: &JobSpec) -> Result<(), String> {
        if self.remote
            && let Some((field, _)) = crate::job::validate::input_images(spec)
                .into_iter()
                .find(|(_, i)| matches!(i.source, ImageSource::Path(_)))
        {
            return Err(format!(
                "{field}: server paths are not accepted over HTTP: give base64 data, a data: URL or a URL"
            ));
        }
        let Some(policy) = &self.policy else {
            return Ok(());
        };
        for (field, img) in crate::job::validate::input_images(spec) {
            let ImageSource::Url(url) = &img.source else {
                continue;
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                continue;
            }
            let parsed = match policy.check_url(url) {
                Ok(u) => u,
                Err(e) => return Err(format!("{field}: {}", describe(url, &e))),
            };
            let Some(url::Host::Domain(host)) = parsed.host() else {
                continue;
            };
            let host = host.to_string();
            let cached = self.hosts.lock().expect("hosts").get(&host).cloned();
            let verdict = match cached {
                Some(v) => v,
                None => {
                    let v = policy
                        .check_resolved(url)
                        .await
                        .map(|_| ())
                        .map_err(|e| describe(url, &e));
                    let mut hosts = self.hosts.lock().expect("hosts");
                    if hosts.len() < CACHED_HOSTS {
                        hosts.insert(host, v.clone());
                    }
                    v
                }
            };
            verdict.map_err(|e| format!("{field}: {e}"))?;
        }
        Ok(())
    }
}

fn describe(url: &str, e: &UrlError) -> String {
    match e {
        UrlError::Refused(r) => format!("`{url}`: {r}"),
        other => other.to_string(),
    }
}
