//! The filter an escalated copy runs under: outside the sandbox, so it restricts nothing,
//! but every `execve`/`execveat` of the copy's tree is stopped and decided by the same
//! policy (the policy follows the escalated tree).
//!
//! Owns: that BPF program. Must never restrict anything else the copy does: it runs outside
//! the sandbox on purpose. The one other rule keeps it in charge: no nested listener may
//! be installed in front of it (a later listener's answer would win).

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

use super::filter::{BpfProgram, FilterError};

/// Builds the escalated tree's filter (once, at start).
pub fn build() -> Result<BpfProgram, FilterError> {
    let lib = |step| move |source| FilterError::Libseccomp { step, source };
    let mut ctx = ScmpFilterContext::new(ScmpAction::Allow).map_err(lib("create context"))?;
    ctx.set_filter_attr(libseccomp::ScmpFilterAttr::CtlNnp, 0)
        .map_err(lib("disable libseccomp's NNP"))?;
    for name in ["execve", "execveat"] {
        let sc = ScmpSyscall::from_name(name).map_err(lib("resolve exec syscall"))?;
        ctx.add_rule(ScmpAction::Notify, sc)
            .map_err(lib("add exec notification"))?;
    }
    let seccomp = ScmpSyscall::from_name("seccomp").map_err(lib("resolve seccomp"))?;
    let new_listener = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    ctx.add_rule_conditional(
        ScmpAction::Errno(libc::EPERM),
        seccomp,
        &[ScmpArgCompare::new(
            1,
            ScmpCompareOp::MaskedEqual(new_listener),
            new_listener,
        )],
    )
    .map_err(lib("deny nested listeners"))?;
    super::filter::export(&ctx)
}
