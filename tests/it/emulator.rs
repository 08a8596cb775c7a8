//! Integration tests of `imagegen emulator`, in-process on `127.0.0.1:0` over real HTTP:
//! every captured SDK request replayed, plus focused tests of routing, auth, validation,
//! outputs, quotas, faults and stats. Helpers live here; tests in the submodules.

mod access;
mod captures;
mod limits;
mod outputs;
mod pictures;
mod predict_validation;
mod validation;

use std::path::PathBuf;

use base64::Engine as _;
use imagegen::emulator::{self, EmulatorHandle, Scenario};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Project used on Vertex paths.
pub const PROJECT: &str = "demo-proj";
/// API key used on Developer-API paths when the scenario has no key table.
pub const API_KEY: &str = "test-key";

/// A running emulator plus an HTTP client and a bearer token obtained via `/token`.
pub struct Emu {
    pub handle: EmulatorHandle,
    pub http: reqwest::Client,
    pub token: String,
}

/// A response: status, content type and body text.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

impl Reply {
    /// The body as JSON (panics with the body text when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl Emu {
    /// Starts an emulator with `scenario` and fetches a token through the JWT flow.
    pub async fn start(scenario: Scenario) -> Emu {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let handle = emulator::spawn(listener, scenario).await.expect("spawn");
        let http = reqwest::Client::new();
        let mut emu = Emu {
            handle,
            http,
            token: String::new(),
        };
        emu.token = emu.token_via_jwt().await;
        emu
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url())
    }

    /// Mints a service-account key through the control API.
    pub async fn mint_key(&self, project: &str) -> Value {
        let r = self
            .http
            .post(self.url("/emulator/service-accounts"))
            .json(&json!({"project_id": project}))
            .send()
            .await
            .expect("mint");
        assert_eq!(r.status(), 200);
        r.json().await.expect("key json")
    }

    /// Signs a JWT-bearer assertion with `key`'s private key (claims overridable).
    pub fn assertion(key: &Value, kid: &str, claims: Value) -> String {
        let pem = key["private_key"].as_str().expect("pem");
        let enc = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa pem");
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, &claims, &enc).expect("sign")
    }

    /// Standard claims for `key`, as google-auth builds them.
    pub fn claims(key: &Value) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({"iss": key["client_email"], "aud": key["token_uri"], "scope": "https://www.googleapis.com/auth/cloud-platform", "iat": now, "exp": now + 3600})
    }

    /// Posts an assertion to the key's token URI.
    pub async fn exchange(&self, token_uri: &str, assertion: &str) -> Reply {
        let r = self
            .http
            .post(token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion),
            ])
            .send()
            .await
            .expect("token request");
        reply(r).await
    }

    /// A bearer token obtained exactly as a service-account client would.
    pub async fn token_via_jwt(&self) -> String {
        let key = self.mint_key(PROJECT).await;
        let kid = key["private_key_id"].as_str().expect("kid").to_string();
        let assertion = Self::assertion(&key, &kid, Self::claims(&key));
        let r = self
            .exchange(key["token_uri"].as_str().expect("token_uri"), &assertion)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// POST to a Vertex model method in `PROJECT`/us-central1 with the bearer token.
    pub async fn vertex(&self, model: &str, method: &str, body: &Value) -> Reply {
        let path = format!(
            "/v1beta1/projects/{PROJECT}/locations/us-central1/publishers/google/models/{model}:{method}"
        );
        self.post(&path, body, Some(&self.token), None).await
    }

    /// POST to a Developer-API model method with `API_KEY`.
    pub async fn dev(&self, model: &str, method: &str, body: &Value) -> Reply {
        self.post(
            &format!("/v1beta/models/{model}:{method}"),
            body,
            None,
            Some(API_KEY),
        )
        .await
    }

    /// POST JSON with optional bearer token and API key.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
        key: Option<&str>,
    ) -> Reply {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("x-goog-api-key", k);
        }
        reply(req.send().await.expect("request")).await
    }

    /// GET `/emulator/stats` as JSON.
    pub async fn stats(&self) -> Value {
        self.http
            .get(self.url("/emulator/stats"))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json")
    }
}

/// Reads a reqwest response into a `Reply`.
pub async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = r.text().await.expect("body");
    Reply {
        status,
        content_type,
        text,
    }
}

/// `shared/` beside the project (`IMAGEGEN_SHARED_DIR` overrides).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("IMAGEGEN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

/// Decodes base64 image bytes and returns the image.
pub fn decode_image(b64: &str) -> image::DynamicImage {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    image::load_from_memory(&bytes).expect("decodable image")
}

/// A PNG of the given size, base64-encoded.
pub fn png_b64(w: u32, h: u32) -> String {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    base64::engine::general_purpose::STANDARD.encode(out.into_inner())
}

/// A one-turn generateContent body.
pub fn gc_body(prompt: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": prompt}]}],
           "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]}})
}

/// The `@type`-suffixed detail of an error body.
pub fn detail<'a>(body: &'a Value, kind: &str) -> Option<&'a Value> {
    body["error"]["details"]
        .as_array()?
        .iter()
        .find(|d| d["@type"].as_str().is_some_and(|t| t.ends_with(kind)))
}

/// The first inline image of a generateContent response.
pub fn first_inline(body: &Value) -> &Value {
    body["candidates"][0]["content"]["parts"]
        .as_array()
        .and_then(|parts| parts.iter().find(|p| p.get("inlineData").is_some()))
        .map(|p| &p["inlineData"])
        .unwrap_or_else(|| panic!("no inline image in {body}"))
}
