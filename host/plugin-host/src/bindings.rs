//! The wasmtime bindings of `orbital:plugin@0.1.0`, generated once here.
//!
//! One module per world; the shared `types` interface is generated in
//! `adapter` and reused by the others so a `Relation` is one Rust type.

/// The `adapter` world.
pub mod adapter {
    wasmtime::component::bindgen!({
        path: "../../wit/orbital-plugin@0.1.0",
        world: "adapter",
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

/// The `materialization` world.
pub mod materialization {
    wasmtime::component::bindgen!({
        path: "../../wit/orbital-plugin@0.1.0",
        world: "materialization",
        imports: {
            "orbital:plugin/database.log": trappable,
            "orbital:plugin/database": async | trappable,
            "orbital:plugin/dialect": async | trappable,
        },
        exports: { default: async },
        with: { "orbital:plugin/types": crate::bindings::adapter::orbital::plugin::types },
    });
}

/// The `macros` world.
pub mod macros {
    wasmtime::component::bindgen!({
        path: "../../wit/orbital-plugin@0.1.0",
        world: "macros",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "orbital:plugin/types": crate::bindings::adapter::orbital::plugin::types },
    });
}

/// `orbital:plugin@0.2.0`: what it shares with 0.1.0 is the 0.1.0 code
/// above (`with:`), so the host's import implementations and the value
/// types serve both versions.
pub mod v0_2 {
    /// The `materialization` world of 0.2.0: a strategy that says whether
    /// it keeps history.
    pub mod materialization {
        wasmtime::component::bindgen!({
            path: ["../../wit/orbital-plugin@0.1.0", "../../wit/orbital-plugin@0.2.0"],
            world: "orbital:plugin/materialization@0.2.0",
            exports: { default: async },
            with: {
                "orbital:plugin/types@0.1.0": crate::bindings::adapter::orbital::plugin::types,
                "orbital:plugin/database@0.1.0": crate::bindings::materialization::orbital::plugin::database,
                "orbital:plugin/dialect@0.1.0": crate::bindings::materialization::orbital::plugin::dialect,
            },
        });
    }

    /// The `connected-adapter` world of 0.2.0: dialect SQL (0.1.0's, as
    /// [`super::adapter`] binds it) and a connection of its own.
    pub mod connected_adapter {
        wasmtime::component::bindgen!({
            path: ["../../wit/orbital-plugin@0.1.0", "../../wit/orbital-plugin@0.2.0"],
            world: "orbital:plugin/connected-adapter@0.2.0",
            exports: { default: async },
            with: {
                "orbital:plugin/types@0.1.0": crate::bindings::adapter::orbital::plugin::types,
                "orbital:plugin/database@0.1.0": crate::bindings::materialization::orbital::plugin::database,
            },
        });
    }
}
