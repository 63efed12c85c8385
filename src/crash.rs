//! Named crash points for the crash tests. In a debug build, `CRASH_AT=name` (or `name:n`)
//! makes the process abort the first (or n-th) time it passes `name`, at a step boundary of
//! billing, collection or refunds, exactly as a `kill -9` would: nothing is flushed, no
//! transaction commits. Release builds compile every point to nothing, and no configuration
//! reaches it.

/// Marks a step boundary.
#[cfg(debug_assertions)]
pub fn point(name: &'static str) {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SPEC: Mutex<Option<Option<(String, u64)>>> = Mutex::new(None);
    static PASSED: AtomicU64 = AtomicU64::new(0);
    let target = SPEC
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(|| {
            std::env::var("CRASH_AT")
                .ok()
                .map(|spec| match spec.split_once(':') {
                    Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
                    None => (spec, 1),
                })
        })
        .clone();
    if let Some((at, nth)) = target
        && at == name
        && PASSED.fetch_add(1, Ordering::SeqCst) + 1 >= nth
    {
        eprintln!("crash point {name} reached: aborting");
        std::process::abort();
    }
}

/// Marks a step boundary (nothing in release builds).
#[cfg(not(debug_assertions))]
pub fn point(_name: &'static str) {}
