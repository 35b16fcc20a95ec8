//! The `macros` world: macro expansion on model SQL.

use crate::__wit::macros::exports::orbital::plugin::expander as wit;
use crate::PluginInfo;

pub use wit::{Argument, Call, Position, Signature};

/// A macro plugin. Implement it on a unit struct and call
/// [`export_macros!`](crate::export_macros).
pub trait Macros {
    /// Who this plugin is.
    fn info() -> PluginInfo;
    /// The macros this plugin claims.
    fn signatures() -> Vec<Signature>;
    /// Expands one call into SQL for the call's position.
    fn expand(call: Call) -> Result<String, String>;
}

/// Catalog look-ups the host offers to macros.
pub mod catalog {
    pub use crate::__wit::macros::orbital::plugin::catalog::*;
}

/// Connects a [`Macros`] implementation to the generated bindings; used by
/// [`export_macros!`](crate::export_macros).
#[doc(hidden)]
pub struct MacroExport<M>(std::marker::PhantomData<M>);

impl<M: Macros> wit::Guest for MacroExport<M> {
    fn describe() -> PluginInfo {
        M::info()
    }
    fn signatures() -> Vec<Signature> {
        M::signatures()
    }
    fn expand(call: Call) -> Result<String, String> {
        M::expand(call)
    }
}

/// Exports a [`Macros`] implementation as this component's `macros` world.
#[macro_export]
macro_rules! export_macros {
    ($macros:ty) => {
        type __OrbitalMacroExport = $crate::MacroExport<$macros>;
        $crate::__wit::macros::__export_macros_world!(__OrbitalMacroExport with_types_in $crate::__wit::macros);
    };
}
