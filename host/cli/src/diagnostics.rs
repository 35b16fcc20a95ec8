//! What went wrong, shown with context: the file, line and column, and the
//! source line under a caret on a terminal; `{"error": ...}` with `--json`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource, Report,
};
use orbital_runner::RunnerError;

use crate::report::Output;

/// Why a command stopped before or instead of running nodes.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Core(#[from] orbital_core::Error),
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    State(#[from] orbital_cas::CasError),
    /// Another orbital process holds what this one needs.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Environment(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Failure {
    /// 2 for what the user can fix in the project or command; 3 for the
    /// environment; 4 when another orbital process holds the environment.
    pub fn exit_code(&self) -> ExitCode {
        let environment = match self {
            Failure::Core(_) | Failure::Usage(_) => false,
            Failure::Runner(e) => matches!(e, RunnerError::Connect { .. } | RunnerError::Plugin(_)),
            Failure::Environment(_) | Failure::Write { .. } | Failure::State(_) => true,
            Failure::Busy(_) => return ExitCode::from(4),
        };
        ExitCode::from(if environment { 3 } else { 2 })
    }

    fn core_errors(&self) -> Vec<&orbital_core::Error> {
        match self {
            Failure::Core(e) | Failure::Runner(RunnerError::Core(e)) => e.flatten(),
            _ => Vec::new(),
        }
    }
}

/// Prints the failure to stderr, or as JSON to stdout.
pub fn report(failure: &Failure, project: &Path, output: &Output) {
    let core = failure.core_errors();
    if output.json {
        let errors: Vec<serde_json::Value> = if core.is_empty() {
            vec![serde_json::json!({ "message": failure.to_string() })]
        } else {
            core.iter().map(|e| error_json(e)).collect()
        };
        println!(
            "{}",
            serde_json::json!({ "error": errors.first(), "errors": errors })
        );
        return;
    }
    if core.is_empty() {
        eprintln!("error: {failure}");
        return;
    }
    for error in core {
        match error
            .location()
            .and_then(|location| snippet(error, location, project))
        {
            Some(rendered) => eprint!("{rendered}"),
            None => eprintln!("error: {error}"),
        }
    }
}

fn error_json(error: &orbital_core::Error) -> serde_json::Value {
    match error.location() {
        Some(l) => serde_json::json!({
            "message": error.to_string(),
            "file": l.path.display().to_string(),
            "line": l.line,
            "column": l.column,
        }),
        None => serde_json::json!({ "message": error.to_string() }),
    }
}

/// The error with its source line, rendered by miette.
fn snippet(
    error: &orbital_core::Error,
    location: &orbital_core::Location,
    project: &Path,
) -> Option<String> {
    let text = std::fs::read_to_string(project.join(&location.path)).ok()?;
    let offset = byte_offset(&text, location.line, location.column)?;
    let diagnostic =
        MietteDiagnostic::new(error.to_string()).with_label(LabeledSpan::at_offset(offset, "here"));
    let report = Report::new(diagnostic)
        .with_source_code(NamedSource::new(location.path.display().to_string(), text));
    let theme = if std::io::stderr().is_terminal() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut rendered = String::new();
    GraphicalReportHandler::new_themed(theme)
        .with_context_lines(1)
        .render_report(&mut rendered, report.as_ref())
        .ok()?;
    Some(rendered)
}

/// The byte offset of a 1-based line and character column.
fn byte_offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let line_text = text.get(line_start..)?.lines().next().unwrap_or("");
    let within = line_text
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(line_text.len(), |(i, _)| i);
    Some(line_start + within)
}

#[cfg(test)]
mod tests {
    use super::byte_offset;

    #[test]
    fn offsets_count_characters_per_line() {
        let text = "select 1\nfrom ünïcode x\n";
        assert_eq!(byte_offset(text, 1, 1), Some(0));
        assert_eq!(byte_offset(text, 2, 6), Some(14));
        assert_eq!(&text[byte_offset(text, 2, 14).unwrap()..][..1], "x");
    }
}
