//! The engine's one error type, with a stable machine code per kind of
//! failure (docs/errors.md lists them): the CLI maps it to exit codes, the
//! API to HTTP statuses.

use std::path::PathBuf;

use orbital_runner::RunnerError;

/// Why a request stopped before or instead of running nodes.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Core(#[from] orbital_core::Error),
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    Store(#[from] orbital_cas::CasError),
    /// Another run holds what this one needs.
    #[error("{0}")]
    Busy(String),
    /// The request itself is wrong (a flag, a name that does not exist).
    #[error("{0}")]
    Usage(String),
    /// The database failed outside a node: the catalog, the warehouse id,
    /// the run lock, publishing.
    #[error("{0}")]
    Database(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the run was cancelled")]
    Cancelled,
    /// A bug: a task panicked or the runtime went away.
    #[error("internal error (please report it): {0}")]
    Internal(String),
}

/// How the failure is the user's to fix, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// The project, a model, a selector or the request is wrong.
    Input,
    /// The database, a plugin component, the state store or the machine.
    Environment,
    /// Another run holds the environment.
    Busy,
    Cancelled,
}

impl EngineError {
    /// A stable, machine-readable code, e.g. `project.parse`.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Core(e) => e.code(),
            EngineError::Runner(e) => e.code(),
            EngineError::Store(e) => e.code(),
            EngineError::Busy(_) => "busy",
            EngineError::Usage(_) => "request.invalid",
            EngineError::Database(_) => "database.error",
            EngineError::Write { .. } => "io.write",
            EngineError::Cancelled => "cancelled",
            EngineError::Internal(_) => "internal",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Core(_) | EngineError::Usage(_) => ErrorKind::Input,
            EngineError::Runner(e) => match e {
                RunnerError::Connect { .. } => ErrorKind::Environment,
                RunnerError::Plugin(orbital_plugin_host::PluginError::Interrupted { .. }) => {
                    ErrorKind::Cancelled
                }
                RunnerError::Plugin(_) => ErrorKind::Environment,
                _ => ErrorKind::Input,
            },
            EngineError::Busy(_) => ErrorKind::Busy,
            EngineError::Cancelled => ErrorKind::Cancelled,
            EngineError::Store(_)
            | EngineError::Database(_)
            | EngineError::Write { .. }
            | EngineError::Internal(_) => ErrorKind::Environment,
        }
    }

    /// The project errors inside, one per problem, for rendering with
    /// their file, line and column.
    pub fn core_errors(&self) -> Vec<&orbital_core::Error> {
        match self {
            EngineError::Core(e) | EngineError::Runner(RunnerError::Core(e)) => e.flatten(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn write(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| EngineError::Write { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_kinds_map_to_exit_codes() {
        let selector = EngineError::Core(orbital_core::Error::Selector {
            selector: "nope".into(),
            message: "no node".into(),
        });
        assert_eq!(selector.code(), "selector.unknown");
        assert_eq!(selector.kind(), ErrorKind::Input);
        let busy = EngineError::Busy("held".into());
        assert_eq!((busy.code(), busy.kind()), ("busy", ErrorKind::Busy));
        let connect = EngineError::Runner(RunnerError::Connect {
            target: "dev".into(),
            source: orbital_runner::DatabaseError::Url("no".into()),
        });
        assert_eq!(connect.code(), "database.connect");
        assert_eq!(connect.kind(), ErrorKind::Environment);
        let trap = EngineError::Runner(RunnerError::Plugin(
            orbital_plugin_host::PluginError::Trap {
                plugin: "p".into(),
                message: "boom".into(),
            },
        ));
        assert_eq!(trap.code(), "plugin.trap");
    }
}
