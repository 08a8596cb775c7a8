//! A minimal stand-in for the emulator's auth routes, used until `imagegen::emulator`
//! serves them: mints RSA service-account keys, verifies RS256 jwt-bearer assertions
//! (and the refresh-token grant of the `authorized_user` test), answers the metadata
//! token route, counts `tokens_issued`, revokes, and Bearer-checks a Vertex route.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};

#[derive(Default)]
struct Accounts {
    /// private_key_id → (client_email, public key PEM)
    keys: HashMap<String, (String, String)>,
    valid_tokens: HashSet<String>,
    tokens_issued: u64,
}

#[derive(Clone)]
struct Shared {
    base_url: String,
    state: Arc<Mutex<Accounts>>,
}

pub async fn serve(listener: tokio::net::TcpListener, base_url: String) {
    let shared = Shared {
        base_url,
        state: Arc::default(),
    };
    let app = Router::new()
        .route("/emulator/service-accounts", post(create_account))
        .route("/emulator/tokens/revoke", post(revoke))
        .route("/emulator/stats", get(stats))
        .route("/token", post(token))
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(metadata_token),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/publishers/google/models/{call}",
            post(vertex),
        )
        .with_state(shared);
    axum::serve(listener, app).await.unwrap();
}

fn issue(shared: &Shared) -> Json<Value> {
    let mut state = shared.state.lock().unwrap();
    state.tokens_issued += 1;
    let token = format!("ya29.stand-in-{}", state.tokens_issued);
    state.valid_tokens.insert(token.clone());
    Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
}

async fn create_account(State(shared): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    let project = body["project_id"].as_str().unwrap_or("p").to_owned();
    let key = tokio::task::spawn_blocking(|| {
        rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap()
    })
    .await
    .unwrap();
    let private_pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public_pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let mut state = shared.state.lock().unwrap();
    let n = state.keys.len() + 1;
    let (kid, email) = (
        format!("kid-{n}"),
        format!("sa-{n}@{project}.iam.gserviceaccount.com"),
    );
    state.keys.insert(kid.clone(), (email.clone(), public_pem));
    Json(json!({
        "type": "service_account", "project_id": project, "private_key_id": kid,
        "private_key": private_pem, "client_email": email, "client_id": format!("{n}"),
        "token_uri": format!("{}/token", shared.base_url),
    }))
}

async fn token(
    State(shared): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let refused = |description: &str| {
        let body = json!({"error": "invalid_grant", "error_description": description});
        (StatusCode::BAD_REQUEST, Json(body))
    };
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            let ok = form.get("refresh_token").map(String::as_str) == Some("1//refresh-secret")
                && form.get("client_secret").map(String::as_str)
                    == Some("d-FL95Q19q7MQmFpd7hHD0Ty")
                && form.contains_key("client_id");
            return if ok {
                Ok(issue(&shared))
            } else {
                Err(refused("Bad refresh token."))
            };
        }
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {}
        _ => return Err(refused("Unsupported grant_type.")),
    }
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    let header = jsonwebtoken::decode_header(&assertion).map_err(|_| refused("Bad JWT."))?;
    let (email, public_pem) = {
        let state = shared.state.lock().unwrap();
        let kid = header.kid.unwrap_or_default();
        state
            .keys
            .get(&kid)
            .cloned()
            .ok_or_else(|| refused("Unknown key id."))?
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[format!("{}/token", shared.base_url)]);
    validation.set_issuer(&[email]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let key = DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
    let claims = jsonwebtoken::decode::<Value>(&assertion, &key, &validation)
        .map_err(|_| refused("Invalid JWT Signature."))?
        .claims;
    if claims["scope"] != "https://www.googleapis.com/auth/cloud-platform" {
        return Err(refused("Bad scope."));
    }
    Ok(issue(&shared))
}

async fn metadata_token(
    State(shared): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, StatusCode> {
    match headers.get("metadata-flavor") {
        Some(v) if v == "Google" => Ok(issue(&shared)),
        _ => Err(StatusCode::FORBIDDEN),
    }
}

async fn revoke(State(shared): State<Shared>) -> StatusCode {
    shared.state.lock().unwrap().valid_tokens.clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(shared): State<Shared>) -> Json<Value> {
    Json(json!({"tokens_issued": shared.state.lock().unwrap().tokens_issued}))
}

async fn vertex(State(shared): State<Shared>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let valid = token.is_some_and(|t| shared.state.lock().unwrap().valid_tokens.contains(t));
    if valid {
        (StatusCode::OK, Json(json!({"candidates": []})))
    } else {
        let error = json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}});
        (StatusCode::UNAUTHORIZED, Json(error))
    }
}
