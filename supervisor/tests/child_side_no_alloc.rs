//! The child-side functions run between fork and exec of a multi-threaded supervisor, where
//! a heap allocation can deadlock on an allocator lock held by a thread that no longer
//! exists. This checks, with a counting allocator, that they allocate nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use supervisor::sandbox::landlock;
use supervisor::{ResourceLimits, SandboxMode, SandboxPolicy};

thread_local! {
    // const-initialised, no destructor: reading it never allocates.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; the counter is a thread-local `Cell` that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout` (all allocations do).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged; `ptr`/`layout` came from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn restrict_self_in_child_does_not_allocate() {
    testkit::skip_unless!(
        (landlock::probe_kernel_abi() == 0).then_some("the kernel has no Landlock")
    );
    let work = tempfile::tempdir().unwrap();
    // Build on a fresh thread and enforce there: Landlock restricts the calling thread
    // only, so the test process stays unrestricted.
    std::thread::spawn(move || {
        let counted = allocations();
        let mut prepared = landlock::prepare(
            &SandboxPolicy::new(SandboxMode::WorkspaceWrite),
            work.path(),
            None,
            landlock::Protection::LandlockSiblings,
            landlock::probe_kernel_abi(),
        )
        .unwrap();
        assert!(
            allocations() > counted,
            "the counter sees this thread's allocations"
        );
        let before = allocations();
        prepared.restrict_self_in_child().unwrap();
        let after = allocations();
        assert_eq!(after - before, 0, "restrict_self_in_child allocated");
        // And it did restrict this thread.
        let escaped = std::fs::write("/etc/execgate-no-alloc-test", "x").is_ok();
        if escaped {
            let _ = std::fs::remove_file("/etc/execgate-no-alloc-test");
        }
        assert!(!escaped, "the thread was not restricted");
    })
    .join()
    .unwrap();
}

#[test]
fn apply_limits_in_child_does_not_allocate() {
    // Limits equal to the current ones: applying them changes nothing in the test process.
    let (soft, _) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE).unwrap();
    let limits = ResourceLimits {
        file_size: Some(soft),
        ..ResourceLimits::inherit()
    };
    let prepared = limits.prepare().unwrap();
    let before = allocations();
    prepared.apply_in_child().unwrap();
    assert_eq!(allocations() - before, 0, "apply_in_child allocated");
}

#[test]
fn child_become_subreaper_does_not_allocate() {
    // Process-wide, and harmless in a test process.
    let before = allocations();
    supervisor::teardown::child_become_subreaper().unwrap();
    assert_eq!(allocations() - before, 0);
}
