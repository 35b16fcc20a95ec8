//! The threads core's parallel work (loading, parsing, fingerprinting) runs
//! on: one pool, so one set of allocator heaps, with stacks deep enough for
//! very deep syntax trees.

use std::sync::LazyLock;

/// The stack size of core's threads. Visiting, formatting and dropping a syntax
/// tree recurse once per level, and a generated chain like `c0 + c1 + ...`
/// is a level per term: a release build holds 400,000 of them (with 2 MiB,
/// under 20,000). Only the pages a thread touches cost memory.
const STACK: usize = 256 << 20;

/// Runs `work` on threads with [`STACK`]-sized stacks. sqlparser's
/// `recursive-protection` feature would grow small stacks instead, but it
/// checks the stack on every call and that cost a twentieth of a compile.
pub(crate) fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    static POOL: LazyLock<Option<rayon::ThreadPool>> = LazyLock::new(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("orbital-core-{i}"))
            .stack_size(STACK)
            .build()
            .ok()
    });
    match POOL.as_ref() {
        Some(pool) => pool.install(work),
        // Threads could not start: the caller's own, as before.
        None => work(),
    }
}
