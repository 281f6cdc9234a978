//! execgate sessions: a supervised shell whose every exec is a decision.
//!
//! A [`SessionSpec`] says what to run and in which sandbox; an [`Approver`] answers the
//! prompts; the session ends with a [`SessionOutcome`] listing what was decided.
//! This crate owns the process tree of each session: it never leaves one behind. It makes
//! no raw syscall and holds no `unsafe`: every kernel call goes through `kernel`.

#![forbid(unsafe_code)]

pub mod approval;
pub mod audit;
pub mod backend;
pub mod cgroup;
mod escalate;
pub mod executable;
mod gate;
pub mod network;
pub mod rlimits;
pub mod routing;
pub mod sandbox;
pub mod session;
mod spawn;
mod spawner;
pub mod stopwatch;
mod supervisor;
pub mod teardown;
pub mod terminal;

pub use approval::{Approval, ApprovalRequest, Approver, HostRequest};
pub use backend::Backend;
pub use cgroup::{CgroupError, CgroupJoiner, CgroupLimits, SessionCgroup};
pub use gate::shown;
pub use gate::sockets::UnixSocketGuard;
pub use network::{EgressError, EgressOptions};
pub use rlimits::{LimitSpecError, PreparedLimits, ResourceLimits};
pub use sandbox::{Enforcement, EnforcementLevel, PreparedLandlock, SandboxMode, SandboxPolicy};
pub use session::{
    Decider, ExecRecord, ExitStatus, RanIn, SessionOutcome, SessionSpec, SessionStdio,
};
pub use session::{Session, Signal, Signaller};
pub use spawn::SessionError;
pub use stopwatch::{PauseGuard, Stopwatch};
pub use supervisor::{BackendRequest, Supervisor, SupervisorError, SupervisorOptions};
pub use teardown::{SessionTree, TeardownReport};
