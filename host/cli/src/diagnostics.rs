//! What went wrong, shown with context: the file, line and column, and the
//! source line under a caret on a terminal; `{"error": ...}` with `--json`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource, Report,
};
use orbital_engine::{EngineError, ErrorKind};

use crate::report::Output;

/// Why a command stopped before or instead of running nodes.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Engine(Box<EngineError>),
    /// The command line is wrong (scaffolding, building plugins).
    #[error("{0}")]
    Usage(String),
    /// A tool the command runs failed to start.
    #[error("{0}")]
    Environment(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A daemon refused the command (`--remote`): its status, the engine's
    /// code and message.
    #[error("{message}")]
    Remote {
        status: u16,
        code: String,
        message: String,
    },
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Engine(Box::new(e))
    }
}

impl From<orbital_runner::RunnerError> for Failure {
    fn from(e: orbital_runner::RunnerError) -> Self {
        EngineError::from(e).into()
    }
}

/// The exit code of a cancelled command: 128 + SIGINT, as shells report it.
pub const CANCELLED: u8 = 130;

impl Failure {
    /// 2 for what the user can fix in the project or command; 3 for the
    /// environment; 4 when another orbital process holds the environment;
    /// 130 when cancelled.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Engine(e) => match e.kind() {
                ErrorKind::Input => 2,
                ErrorKind::Environment => 3,
                ErrorKind::Busy => 4,
                ErrorKind::Cancelled => CANCELLED,
            },
            Failure::Usage(_) => 2,
            Failure::Environment(_) | Failure::Write { .. } => 3,
            Failure::Remote { status, code, .. } => match (*status, code.as_str()) {
                (_, "cancelled") => CANCELLED,
                (409, _) => 4,
                (400..=499, _) if *status != 401 => 2,
                _ => 3,
            },
        })
    }

    fn core_errors(&self) -> Vec<&orbital_core::Error> {
        match self {
            Failure::Engine(e) => e.core_errors(),
            _ => Vec::new(),
        }
    }

    /// The engine's machine code, for `--json`.
    fn code(&self) -> &str {
        match self {
            Failure::Engine(e) => e.code(),
            Failure::Usage(_) => "request.invalid",
            Failure::Environment(_) => "environment",
            Failure::Write { .. } => "io.write",
            Failure::Remote { code, .. } => code,
        }
    }
}

/// Prints the failure to stderr, or as JSON to stdout.
pub fn report(failure: &Failure, project: &Path, output: &Output) {
    let core = failure.core_errors();
    if output.json {
        let code = failure.code();
        let errors: Vec<serde_json::Value> = if core.is_empty() {
            vec![serde_json::json!({ "message": failure.to_string(), "code": code })]
        } else {
            core.iter().map(|e| error_json(e, e.code())).collect()
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

fn error_json(error: &orbital_core::Error, code: &str) -> serde_json::Value {
    match error.location() {
        Some(l) => serde_json::json!({
            "message": error.to_string(),
            "code": code,
            "file": l.path.display().to_string(),
            "line": l.line,
            "column": l.column,
        }),
        None => serde_json::json!({ "message": error.to_string(), "code": code }),
    }
}

/// The error with its source line, rendered by miette.
fn snippet(
    error: &orbital_core::Error,
    location: &orbital_core::Location,
    project: &Path,
) -> Option<String> {
    let text = std::fs::read_to_string(project.join(&location.path)).ok()?;
    render_snippet(
        &error.to_string(),
        &location.path.display().to_string(),
        text,
        location.line,
        location.column,
        std::io::stderr().is_terminal(),
    )
}

/// Lines longer than this are not shown: a caret under a 60,000-character
/// line of generated SQL helps nobody, and miette panics on lines past
/// 65,535 characters.
const SNIPPET_LINE_LIMIT: usize = 1_000;

/// `message` over the source line at `line`:`column` of `text`; `None`
/// (the caller prints the message alone, which carries the position) when
/// the position is not in the text, a line around it is too long to show,
/// or the renderer fails.
fn render_snippet(
    message: &str,
    name: &str,
    text: String,
    line: usize,
    column: usize,
    color: bool,
) -> Option<String> {
    let offset = byte_offset(&text, line, column)?;
    // The line itself and the context line on each side are shown.
    let first = line.saturating_sub(2);
    if text
        .lines()
        .skip(first)
        .take(3)
        .any(|l| l.chars().count() > SNIPPET_LINE_LIMIT)
    {
        return None;
    }
    let diagnostic =
        MietteDiagnostic::new(message).with_label(LabeledSpan::at_offset(offset, "here"));
    let report = Report::new(diagnostic).with_source_code(NamedSource::new(name, text));
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    // The renderer is a dependency's code running on user text: if it ever
    // panics, the error is still printed, without the snippet.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut rendered = String::new();
        GraphicalReportHandler::new_themed(theme)
            .with_context_lines(1)
            .render_report(&mut rendered, report.as_ref())
            .ok()
            .map(|()| rendered)
    }))
    .ok()
    .flatten()
}

/// The byte offset of a 1-based line and character column; `None` for a
/// line past the end of `text`.
fn byte_offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let before: Vec<usize> = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .collect();
    // The line after a final newline exists (it is empty); any later one does not.
    let complete = before.len() == line.saturating_sub(1)
        && (before.is_empty() || text[..before.iter().sum()].ends_with('\n'));
    if !complete {
        return None;
    }
    let line_start: usize = before.iter().sum();
    let line_text = text.get(line_start..)?.lines().next().unwrap_or("");
    let within = line_text
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(line_text.len(), |(i, _)| i);
    Some(line_start + within)
}

#[cfg(test)]
mod tests {
    use super::{SNIPPET_LINE_LIMIT, byte_offset, render_snippet};

    fn render(text: &str, line: usize, column: usize) -> Option<String> {
        render_snippet(
            "boom",
            "models/m.sql",
            text.to_string(),
            line,
            column,
            false,
        )
    }

    #[test]
    fn long_lines_are_reported_without_a_snippet() {
        for length in [SNIPPET_LINE_LIMIT + 1, 70_000, 200_000] {
            let long = format!("select {}", "x + ".repeat(length / 4));
            assert_eq!(render(&long, 1, 10), None, "{length}");
            // Also as the line before or after the one pointed at.
            let around = format!("select 1\n{long}\nfrom t\n");
            assert_eq!(render(&around, 1, 1), None);
            assert_eq!(render(&around, 3, 1), None);
        }
        let short = "select 1\nfrom t\n";
        assert!(render(short, 2, 6).unwrap().contains("from t"));
    }

    #[test]
    fn awkward_text_and_positions_render_or_fall_back_without_panicking() {
        let texts = [
            "select\t1,\t2\nfrom\tt\n",
            "select '表格表格' as wide, 'e\u{301}\u{301}' as combining\nfrom t",
            "select 1 -- 🚀🚀🚀\nfrom t\r\nwhere x",
            "",
            "\n\n\n",
            "no newline at the end",
        ];
        for text in texts {
            for line in 0..6 {
                for column in [0, 1, 2, 5, 8, 20, 1_000, usize::MAX] {
                    let _ = render(text, line, column);
                }
            }
        }
        assert_eq!(render("select 1\n", 5, 1), None, "a line past the end");
        let wide = render("select '表格' from t", 1, 17).unwrap();
        assert!(wide.contains("from t"), "{wide}");
    }

    #[test]
    fn offsets_count_characters_per_line() {
        let text = "select 1\nfrom ünïcode x\n";
        assert_eq!(byte_offset(text, 1, 1), Some(0));
        assert_eq!(byte_offset(text, 2, 6), Some(14));
        assert_eq!(&text[byte_offset(text, 2, 14).unwrap()..][..1], "x");
    }
}
