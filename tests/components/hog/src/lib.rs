//! Test component: a materialization that allocates without bound.

use orbital_sdk::{Materialization, ModelTask, Outcome, PluginInfo};

struct Hog;

impl Materialization for Hog {
    fn info() -> PluginInfo {
        orbital_sdk::plugin_info!("test-hog", "Allocates until it is stopped")
    }
    fn strategy() -> String {
        "hog".into()
    }
    fn materialize(_task: ModelTask) -> Result<Outcome, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
}

orbital_sdk::export_materialization!(Hog);
