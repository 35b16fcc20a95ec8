//! The one error type of the core, by phase.

use std::fmt;
use std::path::PathBuf;

/// A position in a project file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn new(path: impl Into<PathBuf>, line: usize, column: usize) -> Self {
        Self {
            path: path.into(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("no orbital.toml in {} (nor a dbt project's dbt_project.yml): run `orbital` inside a project, pass --project DIR, or start one with `orbital init`", dir.display())]
    NoProject { dir: PathBuf },

    #[error("{location}: {message}")]
    Config { location: Location, message: String },

    #[error("{location}: SQL syntax error in model `{model}`: {message}")]
    Syntax {
        location: Location,
        model: String,
        message: String,
    },

    #[error("{location}: model `{model}` {message}")]
    InvalidModel {
        location: Location,
        model: String,
        message: String,
    },

    /// A model or test (`node`) that writes: `what` is the first write in it.
    #[error(
        "{location}: {node} `{name}` contains {what}: a model or test is a query that only reads (Orbital writes the DDL)"
    )]
    Writes {
        location: Location,
        node: &'static str,
        name: String,
        what: &'static str,
    },

    #[error("{location}: model `{model}` refers to unknown table `{name}`{hint}")]
    UnknownRelation {
        location: Location,
        model: String,
        name: String,
        hint: String,
    },

    /// `message` names the macro (and its plugin, when it comes from one).
    #[error("{location}: model `{model}`: {message}")]
    Macro {
        location: Location,
        model: String,
        name: String,
        message: String,
    },

    #[error("{location}: dependency cycle: {}", cycle.join(" -> "))]
    Cycle {
        location: Location,
        cycle: Vec<String>,
    },

    #[error("{location}: duplicate name `{name}`: also defined at {}", first.display())]
    Duplicate {
        location: Location,
        name: String,
        first: PathBuf,
    },

    #[error("{location}: malformed CSV in seed `{seed}`: {message}")]
    Csv {
        location: Location,
        seed: String,
        message: String,
    },

    #[error("unknown target `{name}`; orbital.toml defines: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    UnknownTarget {
        name: String,
        available: Vec<String>,
    },

    #[error("invalid selector `{selector}`: {message}")]
    Selector { selector: String, message: String },

    #[error(
        "model `{model}` reads `{upstream}`, which environment `{environment}` has never built; select it too (e.g. --select +{model})"
    )]
    Unbuilt {
        model: String,
        upstream: String,
        environment: String,
    },

    #[error(
        "model `{model}` reads `{upstream}`, whose build the state store records but the warehouse no longer has (dropped outside Orbital, or an older copy of the database); select it too to rebuild it (e.g. --select +{model})"
    )]
    MissingUpstream { model: String, upstream: String },

    #[error(
        "invalid environment name `{name}`: use 1-32 lowercase letters, digits and single _ between them, starting with a letter (`orbital` is reserved)"
    )]
    Environment { name: String },

    #[error("{}", render_many(.0))]
    Many(Vec<Error>),
}

fn render_many(errors: &[Error]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!("{} errors:\n{}", errors.len(), lines.join("\n"))
}

impl Error {
    /// A stable, machine-readable code, e.g. `project.parse` (docs/errors.md).
    pub fn code(&self) -> &'static str {
        use Error as E;
        match self {
            E::Io { .. } => "project.io",
            E::NoProject { .. } => "project.missing",
            E::Config { .. } => "project.config",
            E::Syntax { .. } => "project.parse",
            E::InvalidModel { .. } => "project.model",
            E::Writes { .. } => "project.writes",
            E::UnknownRelation { .. } => "project.unknown_relation",
            E::Macro { .. } => "project.macro",
            E::Cycle { .. } => "project.cycle",
            E::Duplicate { .. } => "project.duplicate",
            E::Csv { .. } => "seed.csv",
            E::UnknownTarget { .. } => "target.unknown",
            E::Selector { .. } => "selector.unknown",
            E::Unbuilt { .. } => "plan.unbuilt",
            E::MissingUpstream { .. } => "plan.missing_upstream",
            E::Environment { .. } => "environment.name",
            E::Many(errors) => errors.first().map_or("project.invalid", Error::code),
        }
    }
    /// Where in a project file the error points, if anywhere.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Config { location, .. }
            | Error::Syntax { location, .. }
            | Error::InvalidModel { location, .. }
            | Error::Writes { location, .. }
            | Error::UnknownRelation { location, .. }
            | Error::Macro { location, .. }
            | Error::Cycle { location, .. }
            | Error::Duplicate { location, .. }
            | Error::Csv { location, .. } => Some(location),
            _ => None,
        }
    }

    /// The individual errors, flattening [`Error::Many`].
    pub fn flatten(&self) -> Vec<&Error> {
        match self {
            Error::Many(errors) => errors.iter().flat_map(Error::flatten).collect(),
            other => vec![other],
        }
    }

    /// One error stays itself; several become [`Error::Many`].
    pub fn collect(mut errors: Vec<Error>) -> Result<()> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Many(errors)),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The candidate nearest to `written` by edit distance, when it is within
/// `max` edits (a tie goes to the first in name order); `ignore_case`
/// compares lowercased.
pub(crate) fn nearest<'a>(
    written: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    max: usize,
    ignore_case: bool,
) -> Option<&'a str> {
    let fold = |text: &str| match ignore_case {
        true => text.to_lowercase(),
        false => text.to_string(),
    };
    let written = fold(written);
    candidates
        .into_iter()
        .map(|candidate| (strsim::levenshtein(&written, &fold(candidate)), candidate))
        .filter(|(distance, _)| *distance <= max)
        .min()
        .map(|(_, candidate)| candidate)
}

/// `; did you mean `x`?` for the [`nearest`] candidate, else nothing.
pub fn did_you_mean<'a>(
    written: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    max: usize,
    ignore_case: bool,
) -> String {
    nearest(written, candidates, max, ignore_case)
        .map(|name| format!("; did you mean `{name}`?"))
        .unwrap_or_default()
}

/// 1-based line and character column of a byte offset in `text` (an
/// offset inside a character counts as that character's start).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    (line, before[line_start..].chars().count() + 1)
}
