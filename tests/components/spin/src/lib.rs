//! Test component: a materialization that never returns.

use orbital_sdk::{Materialization, ModelTask, Outcome, PluginInfo};

struct Spin;

impl Materialization for Spin {
    fn info() -> PluginInfo {
        orbital_sdk::plugin_info!("test-spin", "Loops forever")
    }
    fn strategy() -> String {
        "spin".into()
    }
    fn materialize(task: ModelTask) -> Result<Outcome, String> {
        let mut n: u64 = task.model.len() as u64;
        loop {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

orbital_sdk::export_materialization!(Spin);
