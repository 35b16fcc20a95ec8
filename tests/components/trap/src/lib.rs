//! Test component: a materialization that panics, so its call traps.

use orbital_sdk::{Materialization, ModelTask, Outcome, PluginInfo};

struct Trap;

impl Materialization for Trap {
    fn info() -> PluginInfo {
        orbital_sdk::plugin_info!("test-trap", "Panics on every call")
    }
    fn strategy() -> String {
        "trap".into()
    }
    fn materialize(task: ModelTask) -> Result<Outcome, String> {
        panic!("test-trap refuses to build {}", task.model)
    }
}

orbital_sdk::export_materialization!(Trap);
