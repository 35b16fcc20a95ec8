//! # orbital-bundle: the first-party plugins, embedded
//!
//! The build script compiles `plugins/*` (and the test components under
//! `tests/components/`) to WebAssembly components; this crate embeds the
//! first-party ones so `orbital` works from any directory with no plugin
//! installation. Depends on nothing at run time.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The path of a test component built beside the first-party plugins, e.g.
/// `test_component("orbital-test-trap")`.
pub fn test_component(krate: &str) -> std::path::PathBuf {
    std::path::Path::new(GUEST_DIR).join(format!("{}.wasm", krate.replace('-', "_")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_first_party_plugin_is_a_component() {
        assert_eq!(super::FIRST_PARTY.len(), 10);
        for (name, bytes) in super::FIRST_PARTY {
            // Component binaries start with the wasm magic and layer 1.
            assert_eq!(&bytes[..4], b"\0asm", "{name}");
            assert_eq!(
                &bytes[6..8],
                &[1, 0],
                "{name} is a core module, not a component"
            );
        }
    }
}
