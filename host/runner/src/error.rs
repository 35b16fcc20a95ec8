//! The one error type of the runner: what stops a run before any node runs.

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("target `{target}`: {source}")]
    Connect {
        target: String,
        source: DatabaseError,
    },

    #[error(
        "target `{target}` uses `{scheme}://`, which no installed adapter serves (installed: {installed})"
    )]
    NoAdapter {
        target: String,
        scheme: String,
        installed: String,
    },

    #[error(
        "model `{model}` asks for materialized = '{strategy}', which no installed plugin provides (installed: {installed})"
    )]
    NoMaterialization {
        model: String,
        strategy: String,
        installed: String,
    },

    #[error("two plugins claim {what}: `{first}` and `{second}`")]
    Conflict {
        what: String,
        first: String,
        second: String,
    },

    #[error("cannot read plugin component {}: {source}", path.display())]
    ReadComponent {
        path: std::path::PathBuf,
        source: std::io::Error,
    },

    #[error("cannot update the environment's relations: {0}")]
    Publish(String),

    #[error(transparent)]
    Plugin(#[from] orbital_plugin_host::PluginError),

    #[error(transparent)]
    Core(#[from] orbital_core::Error),
}

impl RunnerError {
    /// A stable, machine-readable code (docs/errors.md).
    pub fn code(&self) -> &'static str {
        match self {
            RunnerError::Connect { .. } => "database.connect",
            RunnerError::NoAdapter { .. } => "plugin.no_adapter",
            RunnerError::NoMaterialization { .. } => "plugin.no_materialization",
            RunnerError::Conflict { .. } => "plugin.conflict",
            RunnerError::ReadComponent { .. } => "plugin.read",
            RunnerError::Publish(_) => "database.publish",
            RunnerError::Plugin(e) => e.code(),
            RunnerError::Core(e) => e.code(),
        }
    }
}

/// Why a target database cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The URL, or what it names, is not something this host can open.
    #[error("{0}")]
    Url(String),
    /// A file or folder the URL names cannot be used.
    #[error("{message}: {source}")]
    File {
        message: String,
        source: std::io::Error,
    },
    /// The server refused the connection or could not be reached.
    #[error("{message}")]
    Server {
        message: String,
        #[source]
        source: Option<sqlx::Error>,
    },
}
