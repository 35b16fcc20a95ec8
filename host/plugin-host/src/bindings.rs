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
