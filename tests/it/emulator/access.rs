//! Credentials: bearer tokens on Vertex, API keys on the Developer API, the token
//! endpoint's JWT checks and the metadata-server stand-in.

use std::collections::BTreeMap;

use imagegen::emulator::Scenario;
use serde_json::json;

use super::{Emu, PROJECT, detail, gc_body};

const VERTEX_PATH: &str = "/v1/projects/demo-proj/locations/global/publishers/google/models/gemini-2.5-flash-image:generateContent";

#[tokio::test]
async fn vertex_without_or_with_an_unknown_token_answers_401_unauthenticated() {
    let emu = Emu::start(Scenario::default()).await;
    let r = emu.post(VERTEX_PATH, &gc_body("x"), None, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["status"], "UNAUTHENTICATED");
    let r = emu
        .post(VERTEX_PATH, &gc_body("x"), Some("ya29.forged"), None)
        .await;
    assert_eq!(r.status, 401);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with(
                "Request had invalid authentication credentials. Expected OAuth 2 access token"
            )
    );
    assert_eq!(
        emu.post(VERTEX_PATH, &gc_body("x"), Some(&emu.token), None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn static_tokens_are_accepted_and_expired_tokens_are_not() {
    let scenario = Scenario {
        static_tokens: vec!["fixed-token".into()],
        token_ttl_s: 0,
        ..Scenario::default()
    };
    let emu = Emu::start(scenario).await;
    assert_eq!(
        emu.post(VERTEX_PATH, &gc_body("x"), Some("fixed-token"), None)
            .await
            .status,
        200
    );
    let r = emu
        .post(VERTEX_PATH, &gc_body("x"), Some(&emu.token), None)
        .await;
    assert_eq!(
        r.status, 401,
        "a token with a 0 s lifetime is already expired"
    );
    assert_eq!(
        detail(&r.json(), "ErrorInfo").map(|d| d["reason"].clone()),
        Some(json!("ACCESS_TOKEN_EXPIRED"))
    );
}

#[tokio::test]
async fn revoked_tokens_answer_401_until_the_client_fetches_a_new_one() {
    let emu = Emu::start(Scenario::default()).await;
    let r = emu
        .http
        .post(emu.url("/emulator/tokens/revoke"))
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    assert_eq!(
        emu.post(VERTEX_PATH, &gc_body("x"), Some(&emu.token), None)
            .await
            .status,
        401
    );
    let fresh = emu.token_via_jwt().await;
    assert_eq!(
        emu.post(VERTEX_PATH, &gc_body("x"), Some(&fresh), None)
            .await
            .status,
        200
    );
    let stats = emu.stats().await;
    assert_eq!(stats["tokens_issued"], 2);
}

#[tokio::test]
async fn developer_api_requires_a_key_and_maps_it_to_a_project() {
    let mut keys = BTreeMap::new();
    keys.insert("key-a".to_string(), "proj-a".to_string());
    let emu = Emu::start(Scenario {
        api_keys: keys,
        ..Scenario::default()
    })
    .await;
    let path = "/v1beta/models/gemini-2.5-flash-image:generateContent";
    let r = emu.post(path, &gc_body("x"), None, None).await;
    assert_eq!(r.status, 403);
    assert!(r.text.contains("Method doesn't allow unregistered callers"));
    let r = emu.post(path, &gc_body("x"), None, Some("key-b")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        detail(&r.json(), "ErrorInfo").map(|d| d["reason"].clone()),
        Some(json!("API_KEY_INVALID"))
    );
    assert_eq!(
        emu.post(path, &gc_body("x"), None, Some("key-a"))
            .await
            .status,
        200
    );
    assert_eq!(
        emu.post(&format!("{path}?key=key-a"), &gc_body("x"), None, None)
            .await
            .status,
        200
    );
    let stats = emu.stats().await;
    assert_eq!(stats["requests"]["proj-a/gemini-2.5-flash-image"]["200"], 2);
}

#[tokio::test]
async fn token_endpoint_rejects_bad_signature_audience_scope_and_lifetime() {
    let emu = Emu::start(Scenario::default()).await;
    let a = emu.mint_key(PROJECT).await;
    let b = emu.mint_key(PROJECT).await;
    assert_eq!(a["type"], "service_account");
    assert!(
        a["private_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("-----BEGIN PRIVATE KEY-----"))
    );
    let uri = a["token_uri"].as_str().expect("token_uri").to_string();
    assert_eq!(uri, emu.url("/token"));
    let kid_a = a["private_key_id"].as_str().expect("kid");
    let forged = Emu::assertion(&b, kid_a, Emu::claims(&a));
    let r = emu.exchange(&uri, &forged).await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        )
    );
    let mut claims = Emu::claims(&a);
    claims["aud"] = json!("https://example.com/token");
    assert_eq!(
        emu.exchange(&uri, &Emu::assertion(&a, kid_a, claims))
            .await
            .json()["error"],
        "invalid_grant"
    );
    let mut claims = Emu::claims(&a);
    claims.as_object_mut().expect("claims").remove("scope");
    assert_eq!(
        emu.exchange(&uri, &Emu::assertion(&a, kid_a, claims))
            .await
            .json()["error"],
        "invalid_scope"
    );
    let mut claims = Emu::claims(&a);
    claims["exp"] = json!(claims["iat"].as_u64().unwrap_or(0) + 7200);
    assert_eq!(
        emu.exchange(&uri, &Emu::assertion(&a, kid_a, claims))
            .await
            .status,
        400
    );
    let mut claims = Emu::claims(&a);
    claims["aud"] = json!("https://oauth2.googleapis.com/token");
    let ok = emu.exchange(&uri, &Emu::assertion(&a, kid_a, claims)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(
        ok.json()["access_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("ya29."))
    );
    assert_eq!(ok.json()["token_type"], "Bearer");
    let stats = emu.stats().await;
    assert_eq!(stats["token_requests"], 6);
}

#[tokio::test]
async fn metadata_server_requires_its_header_and_issues_usable_tokens() {
    let emu = Emu::start(Scenario::default()).await;
    let url = emu.url("/computeMetadata/v1/instance/service-accounts/default/token");
    assert_eq!(emu.http.get(&url).send().await.expect("get").status(), 403);
    let r = emu
        .http
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.headers()
            .get("metadata-flavor")
            .and_then(|v| v.to_str().ok()),
        Some("Google")
    );
    let token: serde_json::Value = r.json().await.expect("json");
    let access = token["access_token"].as_str().expect("token");
    assert_eq!(
        emu.post(VERTEX_PATH, &gc_body("x"), Some(access), None)
            .await
            .status,
        200
    );
    let project = emu
        .http
        .get(emu.url("/computeMetadata/v1/project/project-id"))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .expect("get");
    assert_eq!(project.text().await.expect("text"), "demo-proj");
}
