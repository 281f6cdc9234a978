//! What the sandbox should hold, in Codex's vocabulary so Codex's sandbox-state maps 1:1.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Codex's sandbox modes.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema), schemars(inline))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Read everywhere, write nowhere but `/dev/null` and the like.
    ReadOnly,
    /// Read everywhere; write under the workdir, the writable roots and tmp.
    WorkspaceWrite,
    /// No filesystem or network restriction; execs are still decided.
    DangerFullAccess,
}

impl SandboxMode {
    /// The spelling on the command line and in Codex's sandbox state.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::ReadOnly => "read-only",
            SandboxMode::WorkspaceWrite => "workspace-write",
            SandboxMode::DangerFullAccess => "danger-full-access",
        }
    }
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown sandbox mode name.
#[derive(Debug, thiserror::Error)]
#[error("unknown sandbox mode `{0}`: expected read-only, workspace-write or danger-full-access")]
pub struct UnknownSandboxMode(pub String);

impl FromStr for SandboxMode {
    type Err = UnknownSandboxMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read-only" => Ok(SandboxMode::ReadOnly),
            "workspace-write" => Ok(SandboxMode::WorkspaceWrite),
            "danger-full-access" => Ok(SandboxMode::DangerFullAccess),
            other => Err(UnknownSandboxMode(other.to_owned())),
        }
    }
}

/// The sandbox a session's allowed execs run in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPolicy {
    pub mode: SandboxMode,
    /// Extra writable directories for `workspace-write` (the workdir always is).
    pub writable_roots: Vec<PathBuf>,
    /// Outbound network (AF_INET/AF_INET6); `AF_UNIX` always works.
    pub network: bool,
    /// `workspace-write`: do not make `$TMPDIR` writable.
    pub exclude_tmpdir_env_var: bool,
    /// `workspace-write`: do not make `/tmp` writable.
    pub exclude_slash_tmp: bool,
    /// Refuse to run unless every restriction was enforced (`--require-sandbox`).
    pub require_full: bool,
    /// `workspace-write`: the session's workdir is writable too. False where the workdir
    /// comes from the agent (an MCP call's `workdir`), which must never be a grant.
    #[serde(default = "yes")]
    pub workdir_writable: bool,
    /// With the network off, unix socket files outside the session that its programs may
    /// connect to (`--allow-unix-socket`). Sockets the session listens on itself always
    /// work (`gate::sockets`).
    #[serde(default)]
    pub allow_unix_sockets: Vec<PathBuf>,
}

fn yes() -> bool {
    true
}

impl SandboxPolicy {
    /// A policy of `mode` with the defaults: no extra roots, network off, tmp writable.
    pub fn new(mode: SandboxMode) -> Self {
        SandboxPolicy {
            mode,
            writable_roots: Vec::new(),
            network: false,
            exclude_tmpdir_env_var: false,
            exclude_slash_tmp: false,
            require_full: false,
            workdir_writable: true,
            allow_unix_sockets: Vec::new(),
        }
    }
}

impl Default for SandboxPolicy {
    /// Codex's default for agents: write the workspace, no network.
    fn default() -> Self {
        SandboxPolicy::new(SandboxMode::WorkspaceWrite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip() {
        for mode in [
            SandboxMode::ReadOnly,
            SandboxMode::WorkspaceWrite,
            SandboxMode::DangerFullAccess,
        ] {
            assert_eq!(mode.as_str().parse::<SandboxMode>().unwrap(), mode);
            assert_eq!(serde_json::to_string(&mode).unwrap(), format!("\"{mode}\""));
        }
    }

    #[test]
    fn unknown_mode_names_the_choices() {
        let err = "readonly".parse::<SandboxMode>().unwrap_err().to_string();
        assert!(
            err.contains("`readonly`") && err.contains("workspace-write"),
            "{err}"
        );
    }
}
