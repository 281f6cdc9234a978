//! The exec-policy flags every subcommand shares.

use std::path::PathBuf;

use policy::{LoadOptions, Policy};
use supervisor::BackendRequest;

#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// A rules file, or a directory of `*.rules` files (repeatable). Loaded after the
    /// default directories ($CODEX_HOME/rules, $XDG_CONFIG_HOME/execgate/rules).
    #[arg(short = 'r', long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,

    /// Load only the --rules paths, not the default directories.
    #[arg(long)]
    pub no_default_rules: bool,
}

impl PolicyArgs {
    /// Loads the policy; a rules file that does not load is an error, never ignored.
    pub fn load(&self) -> anyhow::Result<Policy> {
        let options = LoadOptions::from_env(self.rules.clone(), !self.no_default_rules);
        let policy = Policy::load(&options)?;
        tracing::debug!(
            rules = policy.rule_count(),
            sources = ?policy.sources(),
            "exec policy loaded"
        );
        Ok(policy)
    }
}

/// `--backend` and `--patched-bash`, shared by `supervise` and `init`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// How execs are decided: `unotify` (a stock bash under seccomp user notification:
    /// every exec of the tree), `wrapper` (a patched bash asking through
    /// execgate-execve-wrapper: only that shell's own execs), or `auto` (unotify where the
    /// kernel and container allow it, else wrapper, with a notice on stderr).
    #[arg(long, value_name = "BACKEND", default_value = "auto")]
    pub backend: BackendRequest,

    /// The patched bash for the wrapper backend (default: $EXECGATE_PATCHED_BASH, else
    /// $EXECGATE_PATCHED_SHELLS/bin/bash, else ../libexec/execgate/bash next to execgate).
    #[arg(long, value_name = "PATH")]
    pub patched_bash: Option<PathBuf>,
}
