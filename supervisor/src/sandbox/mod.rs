//! The sandbox every "allowed" exec continues in: what it should hold ([`SandboxPolicy`])
//! and, at session start, what the kernel actually let us enforce.

mod policy;

pub use self::policy::{SandboxMode, SandboxPolicy};
