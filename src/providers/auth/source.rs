//! Where credentials come from: the config string (`CredentialSource`), the environment
//! values the constructor consults (`AuthEnv`) and the ADC search order (`adc_lookup`).
//! This file reads env vars only in the two explicit entry points (`CredentialSource::parse`
//! and `AuthEnv::from_process`); everything else takes values as arguments.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use secrecy::SecretString;

use super::AuthError;

/// Where credentials come from, parsed from the config string.
#[derive(Debug)]
pub enum CredentialSource {
    /// `"adc"`: `GOOGLE_APPLICATION_CREDENTIALS` file → gcloud ADC file
    /// (`$CLOUDSDK_CONFIG` or `~/.config/gcloud/application_default_credentials.json`) →
    /// metadata server.
    Adc,
    /// A path, or `"file:PATH"`: a service-account key (or `authorized_user`) JSON file.
    ServiceAccountFile(PathBuf),
    /// `"env:VAR"`: a Gemini Developer API key, read from env var VAR at parse time.
    ApiKey(SecretString),
    /// `"metadata"`: the GCE/GKE/Cloud Run metadata server only.
    Metadata,
    /// `"none"`: send no auth header (for proxies that add their own).
    None,
}

impl CredentialSource {
    /// Parses the `credentials` setting; `env:VAR` reads VAR from the process environment.
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        Self::parse_with(s, |var| std::env::var(var).ok())
    }

    /// Like [`CredentialSource::parse`], with env lookups answered by `env` (for tests and
    /// for callers that already hold the environment).
    pub fn parse_with(s: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, AuthError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AuthError::EmptySetting);
        }
        if let Some(var) = s.strip_prefix("env:") {
            let var = var.trim();
            if var.is_empty() {
                return Err(AuthError::EmptyEnvVarName);
            }
            return match env(var) {
                Some(key) if !key.trim().is_empty() => {
                    Ok(Self::ApiKey(SecretString::from(key.trim().to_owned())))
                }
                _ => Err(AuthError::MissingEnvVar {
                    var: var.to_owned(),
                }),
            };
        }
        if let Some(path) = s.strip_prefix("file:") {
            let path = path.trim();
            if path.is_empty() {
                return Err(AuthError::EmptySetting);
            }
            return Ok(Self::ServiceAccountFile(PathBuf::from(path)));
        }
        Ok(match s.to_ascii_lowercase().as_str() {
            "adc" => Self::Adc,
            "metadata" => Self::Metadata,
            "none" => Self::None,
            _ => Self::ServiceAccountFile(PathBuf::from(s)),
        })
    }
}

impl FromStr for CredentialSource {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The environment values credential resolution depends on. `Credentials::new` fills it
/// from the process; tests build it by hand so they never race on `set_var`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthEnv {
    /// `GOOGLE_APPLICATION_CREDENTIALS`.
    pub google_application_credentials: Option<PathBuf>,
    /// `CLOUDSDK_CONFIG` (gcloud's config directory).
    pub cloudsdk_config: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `GCE_METADATA_HOST` (`host` or `host:port`).
    pub gce_metadata_host: Option<String>,
}

impl AuthEnv {
    /// Reads the variables from the process environment; blank values count as unset.
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            google_application_credentials: var("GOOGLE_APPLICATION_CREDENTIALS")
                .map(PathBuf::from),
            cloudsdk_config: var("CLOUDSDK_CONFIG").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            gce_metadata_host: var("GCE_METADATA_HOST"),
        }
    }

    /// The gcloud ADC file location: `$CLOUDSDK_CONFIG/…` else `$HOME/.config/gcloud/…`.
    pub fn gcloud_adc_path(&self) -> Option<PathBuf> {
        const FILE: &str = "application_default_credentials.json";
        match (&self.cloudsdk_config, &self.home) {
            (Some(dir), _) => Some(dir.join(FILE)),
            (None, Some(home)) => Some(home.join(".config").join("gcloud").join(FILE)),
            (None, None) => None,
        }
    }
}

/// What `"adc"` resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdcChoice {
    /// The file named by `GOOGLE_APPLICATION_CREDENTIALS` (used even if missing, so the
    /// error names it rather than silently falling through, as google-auth does).
    EnvFile(PathBuf),
    /// gcloud's `application_default_credentials.json`, which exists.
    GcloudFile(PathBuf),
    /// Neither file: the metadata server.
    Metadata,
}

/// The ADC search order (spec §2.1) as a pure function; `exists` answers whether a file is
/// present. App Engine standard (google-auth step 3) is not supported.
pub fn adc_lookup(env: &AuthEnv, exists: impl Fn(&Path) -> bool) -> AdcChoice {
    if let Some(path) = &env.google_application_credentials {
        return AdcChoice::EnvFile(path.clone());
    }
    match env.gcloud_adc_path() {
        Some(path) if exists(&path) => AdcChoice::GcloudFile(path),
        _ => AdcChoice::Metadata,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_keywords_case_insensitively() {
        assert!(matches!(
            CredentialSource::parse_with("adc", no_env),
            Ok(CredentialSource::Adc)
        ));
        assert!(matches!(
            CredentialSource::parse_with(" ADC ", no_env),
            Ok(CredentialSource::Adc)
        ));
        assert!(matches!(
            CredentialSource::parse_with("metadata", no_env),
            Ok(CredentialSource::Metadata)
        ));
        assert!(matches!(
            CredentialSource::parse_with("none", no_env),
            Ok(CredentialSource::None)
        ));
    }

    #[test]
    fn parses_paths_with_and_without_file_prefix() {
        for (input, want) in [
            ("/etc/keys/sa.json", "/etc/keys/sa.json"),
            ("./sa.json", "./sa.json"),
            ("file:/etc/keys/sa.json", "/etc/keys/sa.json"),
            ("file:adc", "adc"),
        ] {
            match CredentialSource::parse_with(input, no_env) {
                Ok(CredentialSource::ServiceAccountFile(p)) => assert_eq!(p, Path::new(want)),
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn env_form_reads_the_named_variable() {
        let env = |var: &str| (var == "ACME_KEY").then(|| "  AIzaSecret  ".to_owned());
        match CredentialSource::parse_with("env:ACME_KEY", env) {
            Ok(CredentialSource::ApiKey(k)) => assert_eq!(k.expose_secret(), "AIzaSecret"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn env_form_with_unset_or_blank_variable_names_it() {
        for value in [None, Some("   ".to_owned())] {
            let err = CredentialSource::parse_with("env:ACME_KEY", |_| value.clone()).unwrap_err();
            assert!(matches!(&err, AuthError::MissingEnvVar { var } if var == "ACME_KEY"));
            assert!(err.to_string().contains("ACME_KEY"), "{err}");
        }
    }

    #[test]
    fn parse_reads_the_process_environment() {
        let err = CredentialSource::parse("env:IMAGEGEN_TEST_SURELY_UNSET_VAR_7f3a").unwrap_err();
        assert!(
            err.to_string()
                .contains("IMAGEGEN_TEST_SURELY_UNSET_VAR_7f3a"),
            "{err}"
        );
        let via_from_str: Result<CredentialSource, _> = "metadata".parse();
        assert!(matches!(via_from_str, Ok(CredentialSource::Metadata)));
    }

    #[test]
    fn rejects_empty_forms() {
        assert!(matches!(
            CredentialSource::parse_with("  ", no_env),
            Err(AuthError::EmptySetting)
        ));
        assert!(matches!(
            CredentialSource::parse_with("file:", no_env),
            Err(AuthError::EmptySetting)
        ));
        assert!(matches!(
            CredentialSource::parse_with("env:", no_env),
            Err(AuthError::EmptyEnvVarName)
        ));
    }

    #[test]
    fn api_key_never_appears_in_debug() {
        let source =
            CredentialSource::parse_with("env:K", |_| Some("AIzaTopSecret".into())).unwrap();
        assert!(!format!("{source:?}").contains("AIzaTopSecret"));
    }

    #[test]
    fn gcloud_path_prefers_cloudsdk_config_over_home() {
        let env = AuthEnv {
            cloudsdk_config: Some("/cfg".into()),
            home: Some("/home/u".into()),
            ..AuthEnv::default()
        };
        assert_eq!(
            env.gcloud_adc_path(),
            Some(PathBuf::from("/cfg/application_default_credentials.json"))
        );
        let env = AuthEnv {
            home: Some("/home/u".into()),
            ..AuthEnv::default()
        };
        assert_eq!(
            env.gcloud_adc_path(),
            Some(PathBuf::from(
                "/home/u/.config/gcloud/application_default_credentials.json"
            ))
        );
    }
}
