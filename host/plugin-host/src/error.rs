//! The one error type of the plugin host.

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot load plugin `{plugin}`: {message}")]
    Load { plugin: String, message: String },

    #[error("plugin `{plugin}` ran past its time limit of {limit_ms} ms and was stopped")]
    Timeout { plugin: String, limit_ms: u64 },

    #[error("plugin `{plugin}` exceeded its memory limit of {limit_mb} MiB and was stopped")]
    Memory { plugin: String, limit_mb: u64 },

    #[error("plugin `{plugin}` was interrupted: the run was cancelled")]
    Interrupted { plugin: String },

    #[error("plugin `{plugin}` crashed: {message}")]
    Trap { plugin: String, message: String },

    #[error("plugin `{plugin}` reported: {message}")]
    Failed { plugin: String, message: String },

    #[error("the plugin engine could not start: {0}")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl PluginError {
    /// A stable machine-readable code (see docs/errors.md).
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::Load { .. } => "plugin.load",
            PluginError::Timeout { .. } => "plugin.timeout",
            PluginError::Memory { .. } => "plugin.memory",
            PluginError::Interrupted { .. } => "cancelled",
            PluginError::Trap { .. } => "plugin.trap",
            PluginError::Failed { .. } => "plugin.failed",
            PluginError::Engine(_) => "plugin.engine",
        }
    }

    /// The plugin the error is about, if any.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            PluginError::Load { plugin, .. }
            | PluginError::Timeout { plugin, .. }
            | PluginError::Memory { plugin, .. }
            | PluginError::Interrupted { plugin }
            | PluginError::Trap { plugin, .. }
            | PluginError::Failed { plugin, .. } => Some(plugin),
            PluginError::Engine(_) => None,
        }
    }
}
