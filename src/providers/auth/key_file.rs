//! Credential JSON files (service-account keys and gcloud `authorized_user` ADC files):
//! reading, validating at start-up, and building the RS256 assertion. Fields are pulled out
//! of a `serde_json::Value` by hand so that no serde message can ever echo a secret value.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::AuthError;

/// Google's OAuth2 token endpoint, used when a file has no `token_uri`.
pub(crate) const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The one scope Vertex AI needs (the SDK requests exactly this one).
pub(crate) const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Lifetime requested for the assertion (Google's maximum).
const ASSERTION_LIFETIME_SECS: i64 = 3600;

/// A parsed credentials file.
pub(crate) enum KeyFile {
    ServiceAccount(ServiceAccountKey),
    AuthorizedUser(AuthorizedUser),
}

impl KeyFile {
    pub(crate) fn quota_project_id(&self) -> Option<&str> {
        match self {
            KeyFile::ServiceAccount(k) => k.quota_project_id.as_deref(),
            KeyFile::AuthorizedUser(u) => u.quota_project_id.as_deref(),
        }
    }
}

/// A `type: service_account` key file.
pub(crate) struct ServiceAccountKey {
    pub(crate) client_email: String,
    private_key: SecretString,
    private_key_id: Option<String>,
    pub(crate) token_uri: String,
    quota_project_id: Option<String>,
}

/// A `type: authorized_user` file written by `gcloud auth application-default login`.
pub(crate) struct AuthorizedUser {
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
    pub(crate) refresh_token: SecretString,
    pub(crate) token_uri: String,
    quota_project_id: Option<String>,
}

/// Reads and validates a credentials file; `origin` says where its path came from.
pub(crate) fn load(path: &Path, origin: &'static str) -> Result<KeyFile, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::ReadFile {
        path: path.to_owned(),
        origin,
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates the JSON text of a credentials file read from `path`.
pub(crate) fn parse(path: &Path, text: &str) -> Result<KeyFile, AuthError> {
    let value: Value = serde_json::from_str(text).map_err(|source| AuthError::Json {
        path: path.to_owned(),
        source,
    })?;
    let Value::Object(map) = value else {
        return Err(AuthError::MissingField {
            path: path.to_owned(),
            field: "type",
        });
    };
    let fields = Fields { path, map: &map };
    match fields.required("type")?.as_str() {
        "service_account" => service_account(&fields).map(KeyFile::ServiceAccount),
        "authorized_user" => authorized_user(&fields).map(KeyFile::AuthorizedUser),
        other => Err(AuthError::UnsupportedType {
            path: path.to_owned(),
            kind: other.to_owned(),
        }),
    }
}

fn service_account(f: &Fields<'_>) -> Result<ServiceAccountKey, AuthError> {
    let client_email = f.required("client_email")?;
    let private_key = SecretString::from(f.required("private_key")?);
    // Parse now so a bad key fails at start-up, not at the first job.
    let pem = private_key.expose_secret();
    RsaPrivateKey::from_pkcs8_pem(pem)
        .map(drop)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem).map(drop))
        .map_err(|_| AuthError::InvalidPrivateKey {
            path: f.path.to_owned(),
        })?;
    Ok(ServiceAccountKey {
        client_email,
        private_key,
        private_key_id: f.optional("private_key_id"),
        token_uri: f.token_uri()?,
        quota_project_id: f.optional("quota_project_id"),
    })
}

fn authorized_user(f: &Fields<'_>) -> Result<AuthorizedUser, AuthError> {
    Ok(AuthorizedUser {
        client_id: f.required("client_id")?,
        client_secret: SecretString::from(f.required("client_secret")?),
        refresh_token: SecretString::from(f.required("refresh_token")?),
        token_uri: f.token_uri()?,
        quota_project_id: f.optional("quota_project_id"),
    })
}

struct Fields<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn optional(&self, field: &str) -> Option<String> {
        match self.map.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => None,
        }
    }

    fn required(&self, field: &'static str) -> Result<String, AuthError> {
        self.optional(field).ok_or_else(|| AuthError::MissingField {
            path: self.path.to_owned(),
            field,
        })
    }

    fn token_uri(&self) -> Result<String, AuthError> {
        let uri = self
            .optional("token_uri")
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        match url::Url::parse(&uri) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(uri),
            _ => Err(AuthError::InvalidTokenUri {
                path: self.path.to_owned(),
                uri,
            }),
        }
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

impl ServiceAccountKey {
    /// The signed JWT to exchange at `token_uri` (RFC 7523 jwt-bearer grant), issued at `now`
    /// (Unix seconds).
    pub(crate) fn assertion(&self, now: i64) -> Result<SecretString, AuthError> {
        let sign_error = |e: jsonwebtoken::errors::Error| AuthError::Sign {
            client_email: self.client_email.clone(),
            reason: e.to_string(),
        };
        let key = EncodingKey::from_rsa_pem(self.private_key.expose_secret().as_bytes())
            .map_err(sign_error)?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let claims = Claims {
            iss: &self.client_email,
            scope: CLOUD_PLATFORM_SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &key)
            .map(SecretString::from)
            .map_err(sign_error)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};

    use super::*;

    fn test_key() -> RsaPrivateKey {
        RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("generate RSA key")
    }

    fn sa_json(private_key: &str, token_uri: Option<&str>) -> String {
        let mut v = serde_json::json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "kid-1",
            "private_key": private_key,
            "client_email": "sa@p.iam.gserviceaccount.com",
        });
        if let Some(uri) = token_uri {
            v["token_uri"] = uri.into();
        }
        v.to_string()
    }

    fn err_of(path: &str, text: &str) -> AuthError {
        match parse(Path::new(path), text) {
            Ok(_) => panic!("{path} parsed"),
            Err(e) => e,
        }
    }

    #[test]
    fn missing_field_error_names_path_and_field() {
        let text = r#"{"type":"service_account","private_key":"x"}"#;
        let err = err_of("/keys/sa.json", text);
        assert!(
            matches!(
                &err,
                AuthError::MissingField {
                    field: "client_email",
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("/keys/sa.json") && msg.contains("client_email"),
            "{msg}"
        );
        let err = err_of(
            "/keys/u.json",
            r#"{"type":"authorized_user","client_id":"c"}"#,
        );
        assert!(err.to_string().contains("client_secret"), "{err}");
    }

    #[test]
    fn invalid_private_key_error_names_path_but_not_the_key() {
        let err = err_of(
            "/keys/bad.json",
            &sa_json("-----BEGIN PRIVATE KEY-----\nNOTAKEYsecretish\n", None),
        );
        assert!(
            matches!(err, AuthError::InvalidPrivateKey { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("/keys/bad.json") && !msg.contains("NOTAKEYsecretish"),
            "{msg}"
        );
    }

    #[test]
    fn unsupported_type_and_bad_json_and_bad_token_uri_are_named() {
        let err = err_of("/k.json", r#"{"type":"external_account"}"#);
        assert!(err.to_string().contains("external_account"), "{err}");
        let err = err_of("/k.json", "{not json");
        assert!(matches!(err, AuthError::Json { .. }) && err.to_string().contains("/k.json"));
        let user = r#"{"type":"authorized_user","client_id":"c","client_secret":"s","refresh_token":"r","token_uri":"ftp://x"}"#;
        assert!(matches!(
            err_of("/k.json", user),
            AuthError::InvalidTokenUri { .. }
        ));
    }

    #[test]
    fn authorized_user_defaults_token_uri_and_keeps_quota_project() {
        let text = r#"{"type":"authorized_user","client_id":"c","client_secret":"s","refresh_token":"r","quota_project_id":"billing-p"}"#;
        let Ok(file) = parse(Path::new("/adc.json"), text) else {
            panic!("parse")
        };
        assert_eq!(file.quota_project_id(), Some("billing-p"));
        let KeyFile::AuthorizedUser(user) = file else {
            panic!("kind")
        };
        assert_eq!(user.token_uri, DEFAULT_TOKEN_URI);
    }

    #[test]
    fn assertion_carries_kid_and_claims_and_verifies_for_pkcs8_and_pkcs1() {
        let key = test_key();
        let public_pem = key.to_public_key().to_pkcs1_pem(LineEnding::LF).unwrap();
        let pkcs8 = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let pkcs1 = key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string();
        for pem in [pkcs8, pkcs1] {
            let text = sa_json(&pem, Some("http://127.0.0.1:9/token"));
            let Ok(KeyFile::ServiceAccount(sa)) = parse(Path::new("/sa.json"), &text) else {
                panic!("parse")
            };
            let now = chrono::Utc::now().timestamp();
            let jwt = sa.assertion(now).unwrap();
            let header = jsonwebtoken::decode_header(jwt.expose_secret()).unwrap();
            assert_eq!(header.kid.as_deref(), Some("kid-1"));
            assert_eq!(header.alg, Algorithm::RS256);
            let mut validation = Validation::new(Algorithm::RS256);
            validation.set_audience(&["http://127.0.0.1:9/token"]);
            validation.set_issuer(&["sa@p.iam.gserviceaccount.com"]);
            let decoding = DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
            let data =
                jsonwebtoken::decode::<Value>(jwt.expose_secret(), &decoding, &validation).unwrap();
            assert_eq!(data.claims["scope"], CLOUD_PLATFORM_SCOPE);
            assert_eq!(data.claims["iat"], now);
            assert_eq!(data.claims["exp"], now + 3600);
        }
    }
}
