//! The sandbox every "allowed" exec continues in: what it should hold ([`SandboxPolicy`])
//! and, at session start, what the kernel actually let us enforce ([`Enforcement`]).

pub mod landlock;
mod policy;

pub use self::landlock::{
    Enforcement, EnforcementLevel, Feature, LandlockError, MissingFeature, PreparedLandlock,
};
pub use self::policy::{SandboxMode, SandboxPolicy};
