//! Where a job's outputs go inside a store: readable, deterministic keys (a re-run
//! overwrites instead of duplicating), DESIGN.md "Outputs":
//! `{project}/{batch}/{seq:06}/result.json` beside the images, which are named by
//! `output.name_template` (default `{seq}/{index}`, so `{project}/{batch}/000007/0.png`).

/// The ids and facts that place a job's outputs.
#[derive(Debug, Clone, Copy)]
pub struct JobLocation<'a> {
    /// Project name.
    pub project: &'a str,
    /// Batch id, or `None` for a job outside any batch (`_single/{job}`).
    pub batch: Option<&'a str>,
    /// Job id.
    pub job: &'a str,
    /// Position in the batch.
    pub seq: Option<u64>,
    /// Line of the job file.
    pub line: Option<u64>,
    /// The prompt (for `{slug}`).
    pub prompt: Option<&'a str>,
    /// The model (for `{model}`).
    pub model: &'a str,
}

impl<'a> JobLocation<'a> {
    /// The location of job `job` of `project`, its batch and position read from its id
    /// (`{batch}.{seq:06}`).
    pub fn of(project: &'a str, job: &'a str) -> Self {
        let (batch, seq) = match crate::job::split_job_id(job) {
            Some((b, s)) => (Some(b), Some(s)),
            None => (None, None),
        };
        JobLocation {
            project,
            batch,
            job,
            seq,
            line: None,
            prompt: None,
            model: "",
        }
    }

    /// The folder of the job's `result.json`, relative to the store root.
    pub fn job_dir(&self) -> String {
        match (self.batch, self.seq) {
            (Some(b), Some(seq)) => format!("{}/{b}/{seq:06}", self.project),
            _ => format!("{}/_single/{}", self.project, self.job),
        }
    }

    /// The folder its image names are relative to.
    fn name_root(&self) -> String {
        match (self.batch, self.seq) {
            (Some(b), Some(_)) => format!("{}/{b}", self.project),
            _ => format!("{}/_single/{}", self.project, self.job),
        }
    }
}

/// One piece of a parsed name template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Seq,
    Line,
    Slug,
    Index,
    Job,
    Model,
}

/// `output.name_template`, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate(Vec<Piece>);

impl Default for NameTemplate {
    fn default() -> Self {
        NameTemplate::parse(DEFAULT_TEMPLATE).expect("the default template parses")
    }
}

/// The default: `{project}/{batch}/{seq}/{index}.png`.
pub const DEFAULT_TEMPLATE: &str = "{seq}/{index}";

impl NameTemplate {
    /// Parses a template; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("`{text}`: a `{{` is not closed"))?;
            let name = &rest[open + 1..open + close];
            pieces.push(match name {
                "seq" => Piece::Seq,
                "line" => Piece::Line,
                "slug" => Piece::Slug,
                "index" => Piece::Index,
                "job" => Piece::Job,
                "model" => Piece::Model,
                other => {
                    return Err(format!(
                        "`{text}`: unknown placeholder `{{{other}}}` (use {{seq}}, {{line}}, {{slug}}, {{index}}, {{job}}, {{model}})"
                    ));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        let has = |p: &Piece| pieces.contains(p);
        if !has(&Piece::Index) {
            return Err(format!(
                "`{text}` needs {{index}}: a job may write several images"
            ));
        }
        if !(has(&Piece::Seq) || has(&Piece::Line) || has(&Piece::Job)) {
            return Err(format!(
                "`{text}` needs {{seq}}, {{line}} or {{job}}: every job's images need names of their own"
            ));
        }
        let escapes = pieces.iter().enumerate().any(|(i, p)| match p {
            Piece::Text(t) => {
                t.contains("..") || t.contains('\\') || (i == 0 && t.starts_with('/'))
            }
            _ => false,
        });
        if escapes {
            return Err(format!(
                "`{text}`: names stay inside the batch's folder (no `..`, leading `/` or `\\`)"
            ));
        }
        Ok(NameTemplate(pieces))
    }

    /// The key of image `index` of the job at `loc`, relative to the store root,
    /// without extension.
    pub fn image_key(&self, loc: &JobLocation<'_>, index: usize) -> String {
        let mut name = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => name.push_str(t),
                Piece::Seq => name.push_str(&format!("{:06}", loc.seq.unwrap_or(0))),
                // Lines of API jobs do not exist: their position stands in.
                Piece::Line => name.push_str(&format!(
                    "{:04}",
                    loc.line.or(loc.seq.map(|s| s + 1)).unwrap_or(0)
                )),
                Piece::Slug => name.push_str(&slug(loc.prompt.unwrap_or(""))),
                Piece::Index => name.push_str(&index.to_string()),
                Piece::Job => name.push_str(loc.job),
                Piece::Model => name.push_str(&safe_segment(loc.model)),
            }
        }
        format!("{}/{name}", loc.name_root())
    }
}

/// The first words of a prompt as a file-name piece: lowercase ASCII letters and digits
/// joined by `-`, at most 40 characters, cut at a word; `image` when nothing is left.
pub fn slug(prompt: &str) -> String {
    let mut out = String::new();
    for word in prompt
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        let extra = if out.is_empty() { 0 } else { 1 };
        if out.len() + extra + word.len() > 40 {
            if out.is_empty() {
                out.push_str(&word[..40]);
            }
            break;
        }
        if extra == 1 {
            out.push('-');
        }
        out.push_str(&word);
    }
    if out.is_empty() { "image".into() } else { out }
}

fn safe_segment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc<'a>(prompt: &'a str) -> JobLocation<'a> {
        JobLocation {
            line: Some(7),
            prompt: Some(prompt),
            model: "gemini-3.1-flash-image",
            ..JobLocation::of("acme", "b1.000006")
        }
    }

    #[test]
    fn the_default_layout_is_project_batch_seq_index() {
        let l = loc("A red fox");
        assert_eq!(l.job_dir(), "acme/b1/000006");
        assert_eq!(NameTemplate::default().image_key(&l, 0), "acme/b1/000006/0");
        let single = JobLocation::of("acme", "lonely");
        assert_eq!(single.job_dir(), "acme/_single/lonely");
    }

    #[test]
    fn templates_name_files_by_line_and_slug() {
        let t = NameTemplate::parse("{line}-{slug}-{index}").unwrap();
        assert_eq!(
            t.image_key(&loc("A red fox, in the snow!"), 0),
            "acme/b1/0007-a-red-fox-in-the-snow-0"
        );
        let t = NameTemplate::parse("{model}/{job}_{index}").unwrap();
        assert_eq!(
            t.image_key(&loc("x"), 2),
            "acme/b1/gemini-3.1-flash-image/b1.000006_2"
        );
    }

    #[test]
    fn templates_that_could_collide_or_escape_are_refused() {
        for bad in [
            "{slug}",
            "{seq}",
            "{line}-{nope}-{index}",
            "../{seq}/{index}",
            "{seq",
        ] {
            assert!(NameTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slugs_are_short_lowercase_words() {
        assert_eq!(slug("  Ünïcode ☃ only  "), "n-code-only");
        assert_eq!(slug("!!!"), "image");
        let long = slug("one two three four five six seven eight nine ten eleven");
        assert!(long.len() <= 40, "{long}");
        assert!(long.starts_with("one-two-three"));
    }
}
