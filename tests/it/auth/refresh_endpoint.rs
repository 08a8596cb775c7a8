//! An OAuth2 refresh-token grant endpoint for the `authorized_user` test. The emulator
//! implements only the jwt-bearer grant, so this checks the refresh-token form Google
//! expects and answers with a token the emulator minted (through its metadata route), so
//! the Vertex call that follows is accepted.

use std::collections::HashMap;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// The refresh token and client secret the endpoint accepts.
pub const REFRESH_TOKEN: &str = "1//refresh-secret";
pub const CLIENT_SECRET: &str = "d-FL95Q19q7MQmFpd7hHD0Ty";

/// Serves `POST /token` on a fresh port; returns its URL.
pub async fn spawn(emulator_base_url: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_uri = format!("http://{}/token", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/token", post(token))
        .with_state(emulator_base_url);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    token_uri
}

async fn token(
    State(emulator): State<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let field = |name: &str| form.get(name).map(String::as_str);
    let valid = field("grant_type") == Some("refresh_token")
        && field("refresh_token") == Some(REFRESH_TOKEN)
        && field("client_secret") == Some(CLIENT_SECRET)
        && field("client_id").is_some_and(|id| !id.is_empty());
    if !valid {
        let body = json!({"error": "invalid_grant", "error_description": "Bad Request"});
        return Err((StatusCode::BAD_REQUEST, Json(body)));
    }
    let minted: Value = reqwest::Client::new()
        .get(format!(
            "{emulator}/computeMetadata/v1/instance/service-accounts/default/token"
        ))
        .header("metadata-flavor", "Google")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Ok(Json(minted))
}
