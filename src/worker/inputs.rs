//! A job's inputs before its call: images named as another job's output (`output_of`, a
//! story's previous frame) become the URL of that image's stored copy, read from the
//! job it names (which the queue ran first: it is a dependency); and the provenance of
//! every input image (where from, SHA-256), recorded in `result.json`.

use crate::job::result::InputRef;
use crate::job::{Content, ImageSource, JobSpec, Part};
use crate::queue::JobQueue;
use crate::storage::OutputStore;

/// Why an `output_of` input could not be read.
#[derive(Debug)]
pub enum OutputError {
    /// The job it names has no such image (it failed, or had fewer images): permanent.
    Missing(String),
    /// The queue did not answer: try again.
    Queue(String),
}

/// `spec` with every `output_of` image replaced by its stored copy's URL (`None` when
/// it has none), and the provenance of its images.
pub async fn resolve(
    queue: &dyn JobQueue,
    project: &str,
    batch: Option<&str>,
    store: &OutputStore,
    spec: &JobSpec,
) -> Result<(Option<JobSpec>, Vec<InputRef>), OutputError> {
    let mut out = None::<JobSpec>;
    let mut inputs = Vec::with_capacity(spec.images.len());
    for (n, img) in spec.images.iter().enumerate() {
        let field = format!("images[{n}]");
        let mut sha256 = None;
        let url = match &img.source {
            ImageSource::Output { job, index } => {
                let job = &crate::job::story::resolve_ref(job, batch);
                let record = queue
                    .job(project, job)
                    .await
                    .map_err(|e| OutputError::Queue(format!("{field}: reading job {job}: {e}")))?;
                let image = record
                    .and_then(|r| r.result)
                    .and_then(|r| r.images.get(*index).cloned())
                    .ok_or_else(|| {
                        OutputError::Missing(format!("{field}: job {job} has no image {index}"))
                    })?;
                let copy = out.get_or_insert_with(|| spec.clone());
                copy.images[n].source = ImageSource::Url(image.url.clone());
                copy.images[n]
                    .mime_type
                    .get_or_insert(image.mime_type.clone());
                sha256 = Some(image.sha256.clone()).filter(|s| !s.is_empty());
                Some(image.url)
            }
            ImageSource::Stored(key) => {
                // Uploads are content-addressed: `inputs/<sha256>.<ext>`.
                sha256 = key
                    .rsplit('/')
                    .next()
                    .and_then(|f| f.split('.').next())
                    .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(str::to_string);
                Some(store.url_of_key(key))
            }
            ImageSource::Url(u) => Some(u.clone()),
            ImageSource::Path(p) => Some(format!("file://{}", p.display())),
            ImageSource::Inline(data) => {
                sha256 = crate::job::image::decode_base64(data)
                    .ok()
                    .map(|b| crate::storage::sha256_hex(&b));
                None
            }
        };
        inputs.push(InputRef { field, url, sha256 });
    }
    if let (Some(plan), Some(story)) = (&spec.plan_of, &spec.story) {
        // A planned frame: its prompt is the plan's, with the story's style.
        let planner = crate::job::story::resolve_ref(plan, batch);
        let record = queue
            .job(project, &planner)
            .await
            .map_err(|e| OutputError::Queue(format!("prompt: reading the plan {planner}: {e}")))?;
        let prompts = record
            .and_then(|r| r.result)
            .and_then(|r| r.text.first().cloned())
            .and_then(|t| crate::providers::plan_prompts(&t));
        let prompt = prompts
            .and_then(|p| p.get(story.frame.saturating_sub(1) as usize).cloned())
            .ok_or_else(|| {
                OutputError::Missing(format!(
                    "prompt: the plan {planner} has no frame {}",
                    story.frame
                ))
            })?;
        let copy = out.get_or_insert_with(|| spec.clone());
        copy.prompt = Some(crate::job::story::frame_prompt(
            &prompt,
            spec.style.as_deref(),
            story.from,
        ));
        copy.plan_of = None;
    }
    if let Some(session) = &spec.session {
        let history = session_history(queue, project, session).await?;
        out.get_or_insert_with(|| spec.clone()).history = history;
    }
    Ok((out, inputs))
}

/// A session turn's history: the turns before it, each user message (its image by
/// reference) and the model's answer. A turn that did not succeed is left out (as far
/// as the model knows, it never happened). The turns before it have ended: it waited
/// for them.
async fn session_history(
    queue: &dyn JobQueue,
    project: &str,
    session: &crate::job::spec::SessionRef,
) -> Result<Vec<Content>, OutputError> {
    let id = &session.id;
    let record = queue
        .session(project, id)
        .await
        .map_err(|e| OutputError::Queue(format!("history: reading session {id}: {e}")))?
        .ok_or_else(|| OutputError::Missing(format!("history: session {id} is gone")))?;
    let mut history = Vec::new();
    for turn in record.turns.iter().take(session.turn) {
        let answer = match &turn.answer {
            Some(answer) => Some(answer.clone()),
            // Its worker could not keep the answer with the session: its job's record.
            None => queue
                .job(project, &turn.job_id)
                .await
                .map_err(|e| {
                    OutputError::Queue(format!("history: reading job {}: {e}", turn.job_id))
                })?
                .filter(|r| r.status == crate::job::JobStatus::Succeeded)
                .and_then(|r| r.result)
                .map(|r| r.answer()),
        };
        let Some(answer) = answer else { continue };
        let mut user = vec![Part::text(&turn.message)];
        if let Some(url) = &turn.image {
            user.push(Part::file(
                turn.image_mime_type.clone().unwrap_or_default(),
                url,
            ));
        }
        history.push(Content {
            role: Some("user".into()),
            parts: user,
        });
        history.push(answer);
    }
    Ok(history)
}
