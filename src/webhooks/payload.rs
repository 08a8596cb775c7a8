//! Event bodies: `{"type", "timestamp", "data"}` (Standard Webhooks), thin enough to
//! stay far below the spec's 20 kB: ids, status, counts, error reason, output URLs
//! (signed ones where the store can sign), never image bytes. Typed both ways: receivers
//! in Rust (and our tests) read them with the same structs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::job::result::excerpt;
use crate::providers::Usage;
use crate::queue::hooks::{DueDelivery, rfc3339};
use crate::queue::{BatchRecord, JobQueue, JobRecord, now_ms};
use crate::storage::{JobLocation, OutputStore, StoredImage};

/// Longest error text carried in a payload.
const MAX_ERROR: usize = 2000;
/// Failed (and cancelled) job ids listed in `batch.completed`.
const MAX_IDS: usize = 100;

/// A body, or "not yet" (a batch's manifest is still being written).
#[derive(Debug)]
pub enum Built {
    /// The JSON body.
    Body(String),
    /// Try again shortly.
    NotYet,
}

/// The envelope of every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<T> {
    /// `job.succeeded`, `batch.completed`, …
    #[serde(rename = "type")]
    pub event: String,
    /// RFC 3339, when it happened.
    pub timestamp: String,
    /// What it is about.
    pub data: T,
}

/// An output image in a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventImage {
    /// Where it is stored, with its size and hash.
    #[serde(flatten)]
    pub image: StoredImage,
    /// A time-limited HTTPS URL, where the store can sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_url: Option<String>,
}

/// `data` of `job.*` events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// Job id.
    pub job_id: String,
    /// Project.
    pub project: String,
    /// Final status (`unknown` when its record expired).
    pub status: String,
    /// Attempts used.
    #[serde(default)]
    pub attempts: u32,
    /// Batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// Line of the job file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Why it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When its last delivery started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it finished.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The retired model the job named, when it was migrated to `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_requested: Option<String>,
    /// Operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The tier it was served at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<crate::job::spec::Tier>,
    /// What it cost (USD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Model text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text: Vec<String>,
    /// The job's `metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// Wall time of its last delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Its images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<EventImage>>,
    /// Its `result.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_url: Option<String>,
    /// The same, signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_signed_url: Option<String>,
}

/// `data` of `batch.completed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchEvent {
    /// Batch id.
    pub batch_id: String,
    /// Project.
    pub project: String,
    /// `completed`, or `cancelled` when a cancel ended it.
    pub status: String,
    /// Where its jobs came from.
    #[serde(default)]
    pub source: String,
    /// Jobs in it.
    #[serde(default)]
    pub total: u64,
    /// Terminal jobs by status.
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    /// Its manifest.
    #[serde(default)]
    pub manifest_url: Option<String>,
    /// The same, signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_signed_url: Option<String>,
    /// When it was submitted.
    #[serde(default)]
    pub created_at: Option<String>,
    /// When it completed.
    #[serde(default)]
    pub completed_at: Option<String>,
    /// Failed and blocked jobs (at most 100).
    #[serde(default)]
    pub failed_job_ids: Vec<String>,
    /// Cancelled jobs (at most 100).
    #[serde(default)]
    pub cancelled_job_ids: Vec<String>,
    /// Why there is nothing else (its record expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The HTTP API's time-limited links to a job's images (`GET /files/…?expires=&signature=`),
/// signed with the project's webhook secret: what a payload links when the store cannot
/// sign URLs (local disk), so a receiver fetches the image with no other credentials.
#[derive(Clone, Copy)]
pub struct ApiLinks<'a> {
    /// The API's public URL.
    pub base: &'a str,
    /// The project's webhook signer.
    pub signer: &'a crate::webhooks::Signer,
}

impl ApiLinks<'_> {
    /// The link to image `n` of `job`, valid until `expires` (Unix seconds).
    pub fn image(&self, project: &str, job: &str, n: usize, expires: u64) -> String {
        let signature = self
            .signer
            .mac(link_message(project, job, n, expires).as_bytes());
        format!(
            "{}/files/{project}/{job}/{n}?expires={expires}&signature={signature}",
            self.base.trim_end_matches('/')
        )
    }
}

/// What an image link's signature covers.
pub fn link_message(project: &str, job: &str, n: usize, expires: u64) -> String {
    format!("{project}/{job}/{n}/{expires}")
}

/// Builds the body of delivery `d` from the records it is about. A job the HTTP API
/// enqueued also carries, at the top level, the API request's `request_id` and its
/// `images` as URLs a receiver can fetch with no other credentials (signed by the store,
/// else [`ApiLinks`]).
pub async fn build(
    queue: &dyn JobQueue,
    store: &OutputStore,
    project: &str,
    d: &DueDelivery,
    signed_ttl: Duration,
    manifest_grace_ms: u64,
    links: Option<ApiLinks<'_>>,
) -> anyhow::Result<Built> {
    if d.event == "story.completed" {
        let data = story_event(queue, store, project, &d.subject, signed_ttl, links).await?;
        let at = queue
            .job(project, &d.subject)
            .await?
            .and_then(|r| r.finished_ms)
            .unwrap_or(d.created_ms);
        return Ok(Built::Body(body(&d.event, at, &data)));
    }
    if d.event == "batch.completed" {
        let Some(b) = queue.batch(project, &d.subject).await? else {
            let data = BatchEvent {
                batch_id: d.subject.clone(),
                project: project.to_string(),
                status: "unknown".into(),
                error: Some("the batch's record has expired".into()),
                ..BatchEvent::default()
            };
            return Ok(Built::Body(body(&d.event, d.created_ms, &data)));
        };
        let manifest = match &b.manifest {
            Some(m) => m.clone(),
            None if now_ms().saturating_sub(b.completed_ms.unwrap_or(0)) < manifest_grace_ms => {
                return Ok(Built::NotYet);
            }
            // The worker that completed the batch died before writing its manifest.
            None => crate::manifest::write(queue, store, project, &d.subject).await?,
        };
        let at = b.completed_ms.unwrap_or(d.created_ms);
        let data = batch_event(project, &b, manifest, store, signed_ttl).await;
        return Ok(Built::Body(body(&d.event, at, &data)));
    }
    let Some(r) = queue.job(project, &d.subject).await? else {
        let data = JobEvent {
            job_id: d.subject.clone(),
            project: project.to_string(),
            status: "unknown".into(),
            error: Some("the job's record has expired".into()),
            ..JobEvent::default()
        };
        return Ok(Built::Body(body(&d.event, d.created_ms, &data)));
    };
    let at = r.finished_ms.unwrap_or(d.created_ms);
    let request_id = r.result.as_ref().and_then(|res| res.request_id.clone());
    let data = job_event(project, r, store, signed_ttl).await;
    let Some(request_id) = request_id else {
        return Ok(Built::Body(body(&d.event, at, &data)));
    };
    let expires = now_ms() / 1000 + signed_ttl.as_secs();
    let images: Vec<String> = data
        .images
        .iter()
        .flatten()
        .enumerate()
        .map(|(n, i)| {
            i.signed_url.clone().unwrap_or_else(|| match links {
                Some(l) if store.own_key(&i.image.url).is_some() => {
                    l.image(project, &data.job_id, n, expires)
                }
                _ => i.image.url.clone(),
            })
        })
        .collect();
    let mut value = serde_json::to_value(Event {
        event: d.event.clone(),
        timestamp: rfc3339(at).unwrap_or_default(),
        data: &data,
    })?;
    value["request_id"] = serde_json::json!(request_id);
    value["images"] = serde_json::json!(images);
    Ok(Built::Body(value.to_string()))
}

/// `data` of `story.completed`: the story as its assembly wrote it (`story.json`, beside
/// the contact sheet the assembly job recorded), every frame's image URL in order
/// (signed by the store, else an API link, where there is one).
async fn story_event(
    queue: &dyn JobQueue,
    store: &OutputStore,
    project: &str,
    assembly: &str,
    signed_ttl: Duration,
    links: Option<ApiLinks<'_>>,
) -> anyhow::Result<serde_json::Value> {
    use serde_json::json;
    let record = queue.job(project, assembly).await?;
    let sheet = record
        .as_ref()
        .and_then(|r| r.result.as_ref())
        .and_then(|r| r.images.first().cloned());
    let story = match sheet
        .as_ref()
        .and_then(|s| store.own_key(&crate::stories::story_json_beside(&s.url)))
    {
        Some(key) => serde_json::from_slice(&store.get(&key).await?)?,
        None => {
            json!({ "status": "failed", "reason": record.as_ref().and_then(|r| r.error.clone()) })
        }
    };
    let expires = now_ms() / 1000 + signed_ttl.as_secs();
    let mut frames = Vec::new();
    for f in story["frames"].as_array().into_iter().flatten() {
        let url = f["image"]["url"].as_str().map(str::to_string);
        let mut signed = match &url {
            Some(u) => store.signed_url(u, signed_ttl).await,
            None => None,
        };
        if let (None, Some(l), Some(job), true) =
            (&signed, links, f["job_id"].as_str(), f["image"].is_object())
        {
            signed = Some(l.image(project, job, 0, expires));
        }
        frames.push(json!({
            "index": f["index"],
            "status": f["status"],
            "job_id": f["job_id"],
            "error": f["error"],
            "url": url,
            "signed_url": signed,
        }));
    }
    let contact_sheet_signed_url = match &sheet {
        Some(s) => store.signed_url(&s.url, signed_ttl).await,
        None => None,
    }
    .or_else(|| links.map(|l| l.image(project, assembly, 0, expires)));
    Ok(json!({
        "story_id": story["story_id"],
        "batch_id": story["batch_id"],
        "project": project,
        "status": story["status"],
        "reason": story["reason"],
        "description": story["description"],
        "frames": frames,
        "contact_sheet": sheet.map(|s| s.url),
        "contact_sheet_signed_url": contact_sheet_signed_url,
        "assembly_job_id": assembly,
    }))
}

async fn batch_event(
    project: &str,
    b: &BatchRecord,
    manifest: String,
    store: &OutputStore,
    signed_ttl: Duration,
) -> BatchEvent {
    let ids = |list: &[String]| {
        let mut v: Vec<String> = list.iter().take(MAX_IDS).cloned().collect();
        v.sort();
        v
    };
    BatchEvent {
        batch_id: b.id.clone(),
        project: project.to_string(),
        status: if b.cancel_requested {
            "cancelled"
        } else {
            "completed"
        }
        .into(),
        source: b.source.clone(),
        total: b.total.unwrap_or(b.enqueued),
        counts: b
            .counts
            .iter()
            .filter(|(s, _)| s.is_terminal())
            .map(|(s, n)| (s.as_str().to_string(), *n))
            .collect(),
        manifest_signed_url: store.signed_url(&manifest, signed_ttl).await,
        manifest_url: Some(manifest),
        created_at: rfc3339(b.created_ms),
        completed_at: b.completed_ms.and_then(rfc3339),
        failed_job_ids: ids(&b.failures),
        cancelled_job_ids: ids(&b.cancelled),
        error: None,
    }
}

async fn job_event(
    project: &str,
    r: JobRecord,
    store: &OutputStore,
    signed_ttl: Duration,
) -> JobEvent {
    let mut data = JobEvent {
        project: project.to_string(),
        status: r.status.as_str().to_string(),
        attempts: r.attempts,
        line: r.line,
        error: r.error.as_deref().map(|e| excerpt(e, MAX_ERROR)),
        started_at: r.started_ms.and_then(rfc3339),
        finished_at: r.finished_ms.and_then(rfc3339),
        batch_id: r.batch.clone(),
        ..JobEvent::default()
    };
    if let Some(res) = r.result {
        let mut images = Vec::with_capacity(res.images.len());
        for image in res.images {
            let signed_url = store.signed_url(&image.url, signed_ttl).await;
            images.push(EventImage { image, signed_url });
        }
        let loc = JobLocation::of(project, &r.id);
        let result_url = store.result_url(&loc);
        data.result_signed_url = store.signed_url(&result_url, signed_ttl).await;
        data.result_url = Some(result_url);
        data.images = Some(images);
        data.model = Some(res.model);
        data.model_requested = res.model_requested;
        data.operation = Some(res.operation);
        data.usage = res.usage;
        data.tier = res.tier;
        data.cost_usd = res.cost_usd;
        data.text = res.text;
        data.metadata = res.metadata;
        data.duration_ms = Some(res.duration_ms);
    }
    data.job_id = r.id;
    data
}

fn body<T: Serialize>(event: &str, at_ms: u64, data: &T) -> String {
    let e = Event {
        event: event.to_string(),
        timestamp: rfc3339(at_ms).unwrap_or_default(),
        data,
    };
    serde_json::to_string(&e).unwrap_or_default()
}
