//! Reading job files line by line in constant memory: JSONL job specs, CSV with a
//! `prompt` column, or plain text with one prompt per line (`#` starts a comment).
//!
//! Every line yields its 1-based line number so errors point at the file.

use std::io::BufRead;
use std::path::Path;

use super::spec::{JobSpec, Operation};

/// The format of a job file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON `JobSpec` per line.
    Jsonl,
    /// CSV with a header row and a `prompt` column.
    Csv,
    /// One prompt per line.
    Text,
}

/// Defaults applied to every line that does not say otherwise.
#[derive(Debug, Clone, Default)]
pub struct LineDefaults {
    /// Model when the line names none.
    pub model: Option<String>,
    /// Operation for text/CSV lines and JSONL lines without `op`.
    pub op: Option<Operation>,
    /// Tier for lines that name none (`submit --tier`, the project's `tier`).
    pub tier: Option<crate::job::spec::Tier>,
}

/// One line that could not become a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong (field first).
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Guesses the format from the extension, then from the first non-empty line.
pub fn detect_format(path: &Path) -> std::io::Result<FileFormat> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jsonl" | "ndjson") => return Ok(FileFormat::Jsonl),
        Some("csv") => return Ok(FileFormat::Csv),
        Some("txt") => return Ok(FileFormat::Text),
        _ => {}
    }
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    for line in file.lines() {
        let line = line?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        return Ok(if t.starts_with('{') {
            FileFormat::Jsonl
        } else {
            FileFormat::Text
        });
    }
    Ok(FileFormat::Text)
}

/// A stream of `(line number, spec)` results.
pub type Lines = Box<dyn Iterator<Item = Result<(usize, JobSpec), LineError>> + Send>;

/// Streams `(line, JobSpec)` results from a file.
pub fn read(path: &Path, format: FileFormat, defaults: LineDefaults) -> std::io::Result<Lines> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    Ok(match format {
        FileFormat::Jsonl => Box::new(file.lines().enumerate().filter_map(move |(i, line)| {
            let line_no = i + 1;
            match line {
                Err(e) => Some(Err(LineError {
                    line: line_no,
                    message: e.to_string(),
                })),
                Ok(l) if l.trim().is_empty() => None,
                Ok(l) => Some(parse_json_line(&l, line_no, &defaults)),
            }
        })),
        FileFormat::Text => Box::new(file.lines().enumerate().filter_map(move |(i, line)| {
            let line_no = i + 1;
            match line {
                Err(e) => Some(Err(LineError {
                    line: line_no,
                    message: e.to_string(),
                })),
                Ok(l) if l.trim().is_empty() || l.trim_start().starts_with('#') => None,
                Ok(l) => Some(Ok((
                    line_no,
                    with_defaults(JobSpec::generate("", l.trim()), &defaults),
                ))),
            }
        })),
        FileFormat::Csv => csv_rows(file, defaults),
    })
}

fn with_defaults(mut spec: JobSpec, d: &LineDefaults) -> JobSpec {
    fill_unnamed(&mut spec, d);
    if let Some(op) = d.op {
        spec.op = op;
    }
    spec
}

/// The model and tier of a line that names none.
fn fill_unnamed(spec: &mut JobSpec, d: &LineDefaults) {
    if spec.model.is_empty() {
        spec.model = d.model.clone().unwrap_or_default();
    }
    if spec.tier.is_none() {
        spec.tier = d.tier;
    }
}

fn parse_json_line(
    line: &str,
    line_no: usize,
    d: &LineDefaults,
) -> Result<(usize, JobSpec), LineError> {
    let has_op = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("op").cloned())
        .is_some();
    let mut spec = JobSpec::from_user_json(line).map_err(|message| LineError {
        line: line_no,
        message,
    })?;
    fill_unnamed(&mut spec, d);
    if let (false, Some(op)) = (has_op, d.op) {
        spec.op = op;
    }
    Ok((line_no, spec))
}

/// CSV columns that are numbers in a `JobSpec`.
const NUMERIC_COLUMNS: &[&str] = &[
    "seed",
    "number_of_images",
    "guidance_scale",
    "temperature",
    "top_p",
    "top_k",
    "output_compression_quality",
    "timeout_s",
];

fn csv_rows(file: std::io::BufReader<std::fs::File>, d: LineDefaults) -> Lines {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
    let headers = match reader.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_string()).collect::<Vec<_>>(),
        Err(e) => {
            return Box::new(std::iter::once(Err(LineError {
                line: 1,
                message: format!("CSV header: {e}"),
            })));
        }
    };
    if !headers.iter().any(|h| h == "prompt") {
        return Box::new(std::iter::once(Err(LineError {
            line: 1,
            message: format!(
                "CSV needs a `prompt` column (found: {})",
                headers.join(", ")
            ),
        })));
    }
    Box::new(reader.into_records().map(move |rec| {
        let rec = rec.map_err(|e| LineError {
            line: e.position().map(|p| p.line() as usize).unwrap_or(0),
            message: e.to_string(),
        })?;
        let line_no = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        let mut obj = serde_json::Map::new();
        for (h, v) in headers.iter().zip(rec.iter()) {
            if v.is_empty() {
                continue;
            }
            let value = if NUMERIC_COLUMNS.contains(&h.as_str()) {
                serde_json::from_str(v).map_err(|_| LineError {
                    line: line_no,
                    message: format!("{h}: `{v}` is not a number"),
                })?
            } else {
                serde_json::Value::String(v.to_string())
            };
            obj.insert(h.clone(), value);
        }
        parse_json_line(&serde_json::Value::Object(obj).to_string(), line_no, &d)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(content: &str, name: &str) -> Vec<Result<(usize, JobSpec), LineError>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let format = detect_format(&path).unwrap();
        let d = LineDefaults {
            model: Some("gemini-2.5-flash-image".into()),
            op: None,
            tier: None,
        };
        read(&path, format, d).unwrap().collect()
    }

    #[test]
    fn text_lines_become_prompts_with_line_numbers() {
        let got = collect("# comment\na cat\n\na dog\n", "p.txt");
        let (line, spec) = got[1].clone().unwrap();
        assert_eq!(
            (line, spec.prompt.as_deref(), spec.model.as_str()),
            (4, Some("a dog"), "gemini-2.5-flash-image")
        );
    }

    #[test]
    fn jsonl_errors_carry_line_and_field() {
        let got = collect(
            "{\"prompt\":\"a\"}\n{\"prompt\":\"b\",\"aspect\":\"1:1\"}\n",
            "j.jsonl",
        );
        assert!(got[0].is_ok());
        let err = got[1].clone().unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("aspect"), "{err}");
    }

    #[test]
    fn fields_imagegen_sets_are_refused_in_a_line() {
        let got = collect(
            "{\"prompt\":\"a\",\"session\":{\"id\":\"s\",\"turn\":1}}\n{\"prompt\":\"b\",\"plan_of\":\"#0\"}\n{\"prompt\":\"c\",\"request_id\":\"req_1\"}\n",
            "j.jsonl",
        );
        for (i, field) in ["session", "plan_of", "request_id"].iter().enumerate() {
            let err = got[i].clone().unwrap_err();
            assert_eq!(err.line, i + 1);
            assert!(err.message.starts_with(field), "{err}");
        }
    }

    #[test]
    fn csv_needs_a_prompt_column_and_types_numbers() {
        let got = collect(
            "prompt,seed,aspect_ratio\n\"a, cat\",7,16:9\nb,x,1:1\n",
            "c.csv",
        );
        let (line, spec) = got[0].clone().unwrap();
        assert_eq!(
            (line, spec.seed, spec.prompt.as_deref()),
            (2, Some(7), Some("a, cat"))
        );
        assert_eq!(got[1].clone().unwrap_err().line, 3);
        let got = collect("text\nx\n", "d.csv");
        assert!(got[0].clone().unwrap_err().message.contains("prompt"));
    }
}
