//! Configuration errors: every one names its key, unknown keys with the nearest valid.

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The layers could not be read or merged (the message says which key).
    #[error("configuration: {0}")]
    Load(String),
    /// A value is invalid.
    #[error("configuration key `{key}`: {message}")]
    Invalid {
        /// Dotted key, e.g. `projects.acme.gcp_project`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl From<config::ConfigError> for ConfigError {
    fn from(e: config::ConfigError) -> Self {
        ConfigError::Load(with_suggestion(&e.to_string()))
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" with the nearest valid name
/// named first (a typo is the usual cause), and unknown keys of the top level said as
/// sections.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((name, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    let expected: Vec<&str> = tail
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.is_empty())
        .collect();
    let nearest = expected
        .iter()
        .map(|e| (strsim::damerau_levenshtein(name, e), *e))
        .min()
        .filter(|(d, e)| *d <= (e.len() / 2).max(2));
    // The config crate appends " for key `worker`" (or nothing at the top level).
    let (section, top) = match tail.rsplit_once(" for key `") {
        Some((_, k)) => (format!("{}.", k.trim_end_matches('`')), false),
        None => (String::new(), true),
    };
    let what = if top { "section" } else { "key" };
    let mut out = format!("unknown {what} `{section}{name}`");
    match nearest {
        Some((_, e)) => out.push_str(&format!(" (did you mean `{section}{e}`?)")),
        None => out.push_str(&format!(
            " (valid: {})",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    out
}

pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}
