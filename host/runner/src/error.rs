//! The one error type of the runner: what stops a run before any node runs.

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("target `{target}`: {message}")]
    Connect { target: String, message: String },

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
    Plugin(#[from] orbital_plugins::PluginError),

    #[error(transparent)]
    Core(#[from] orbital_core::Error),
}
