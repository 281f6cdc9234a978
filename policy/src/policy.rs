//! A loaded policy: where its rules files are found, and how one exec is evaluated.

use std::path::{Path, PathBuf};

use crate::decision::DecidedBy;
use crate::error::LoadError;
use crate::evaluation::{Evaluation, RuleMatch};
use crate::heuristics;
use crate::rule::RuleSet;
use crate::rules_file::{RulesBuilder, parse_file};

/// Where to find rules files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Explicit files or directories (`--rules PATH`); each must exist.
    pub rules: Vec<PathBuf>,
    /// Also load the default directories (see [`LoadOptions::default_dirs`]); missing ones
    /// are skipped.
    pub default_rules: bool,
    /// `$CODEX_HOME` (default `~/.codex`).
    pub codex_home: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME` (default `~/.config`).
    pub xdg_config_home: Option<PathBuf>,
    /// `$HOME`, for the defaults above and `~/` in `host_executable` paths.
    pub home: Option<PathBuf>,
}

impl LoadOptions {
    /// Options from the environment: `CODEX_HOME`, `XDG_CONFIG_HOME` and `HOME` (empty
    /// counts as unset).
    pub fn from_env(rules: Vec<PathBuf>, default_rules: bool) -> Self {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        LoadOptions {
            rules,
            default_rules,
            codex_home: var("CODEX_HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            home: var("HOME"),
        }
    }

    /// The default rules directories, in load order: `$CODEX_HOME/rules` (Codex's own, so
    /// existing rules work unchanged), then `$XDG_CONFIG_HOME/execgate/rules`.
    pub fn default_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        let codex_home = self
            .codex_home
            .clone()
            .or_else(|| self.home.as_ref().map(|home| home.join(".codex")));
        if let Some(codex_home) = codex_home {
            dirs.push(codex_home.join("rules"));
        }
        let config = self
            .xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|home| home.join(".config")));
        if let Some(config) = config {
            dirs.push(config.join("execgate").join("rules"));
        }
        dirs
    }
}

/// A loaded exec policy: the rules, indexed by program, plus the heuristics for commands
/// no rule matches. Immutable once loaded; share it across threads.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    set: RuleSet,
    network_rules: usize,
    sources: Vec<PathBuf>,
}

impl Policy {
    /// No rules: the heuristics decide everything.
    pub fn empty() -> Policy {
        Policy::default()
    }

    /// Loads the default directories (if asked) and then every `--rules` path, in order. A
    /// directory contributes its `*.rules` files, sorted by name. The first error stops
    /// the load: a broken file never leaves a partial policy behind.
    pub fn load(opts: &LoadOptions) -> Result<Policy, LoadError> {
        let mut files: Vec<PathBuf> = Vec::new();
        if opts.default_rules {
            for dir in opts.default_dirs() {
                collect_rules_files(&dir, true, &mut files)?;
            }
        }
        for path in &opts.rules {
            collect_rules_files(path, false, &mut files)?;
        }
        // The same file reached twice (a default directory also given with --rules) would
        // report every match twice.
        let mut seen = Vec::new();
        files.retain(|file| {
            let key = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
            if seen.contains(&key) {
                false
            } else {
                seen.push(key);
                true
            }
        });

        let mut builder = RulesBuilder::new(opts.home.clone());
        for file in &files {
            let bytes = std::fs::read(file).map_err(|source| LoadError::Io {
                path: file.clone(),
                source,
            })?;
            let text =
                String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8 { path: file.clone() })?;
            parse_file(&mut builder, file, &text)?;
        }
        Ok(Policy::from_builder(builder, files))
    }

    /// Loads rules from a string; `name` is used as the file name in errors and origins.
    /// `~/` in `host_executable` paths is an error here (no home directory is known).
    pub fn from_source(name: &str, source: &str) -> Result<Policy, LoadError> {
        let mut builder = RulesBuilder::new(None);
        parse_file(&mut builder, Path::new(name), source)?;
        Ok(Policy::from_builder(builder, vec![PathBuf::from(name)]))
    }

    fn from_builder(builder: RulesBuilder, sources: Vec<PathBuf>) -> Policy {
        Policy {
            set: RuleSet::new(builder.rules, builder.host_executables),
            network_rules: builder.network_rules,
            sources,
        }
    }

    /// How many prefix rules were loaded (a rule whose first token lists alternatives
    /// counts once per alternative, as Codex indexes it).
    pub fn rule_count(&self) -> usize {
        self.set.rules.len()
    }

    /// How many `network_rule(...)` calls were accepted. execgate does not enforce them.
    pub fn network_rule_count(&self) -> usize {
        self.network_rules
    }

    /// The rules files loaded, in order.
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// The paths `host_executable(name=...)` allows for `name`, if the rules name any.
    pub fn host_executable_paths(&self, name: &str) -> Option<&[PathBuf]> {
        self.set.host_executables.get(name).map(Vec::as_slice)
    }

    /// Evaluates one exec. `program` is the executable as exec'd (an absolute path from
    /// the supervisor, or a bare name for `execgate check`); `argv` is the full argv,
    /// `argv[0]` included (and ignored: `program` stands in its place).
    pub fn evaluate(&self, program: &str, argv: &[String]) -> Evaluation {
        let args = argv.get(1..).unwrap_or_default();
        let found = self.set.matches(program, args);
        if found.is_empty() {
            let verdict = heuristics::judge(program, args);
            return Evaluation {
                decision: verdict.decision,
                decided_by: DecidedBy::Heuristics,
                matched_rules: Vec::new(),
                heuristic: Some(verdict),
            };
        }
        let matched_rules: Vec<RuleMatch> = found
            .into_iter()
            .map(|m| {
                let rule = &self.set.rules[m.rule];
                let mut matched_prefix = Vec::with_capacity(m.prefix_len);
                matched_prefix.push(rule.program.clone());
                matched_prefix.extend(args[..m.prefix_len - 1].iter().cloned());
                RuleMatch {
                    matched_prefix,
                    decision: rule.decision,
                    justification: rule.justification.clone(),
                    origin: rule.origin.clone(),
                    resolved_program: m.resolved_program,
                }
            })
            .collect();
        let decision = matched_rules
            .iter()
            .map(|m| m.decision)
            .max()
            .unwrap_or(heuristics::DEFAULT_DECISION);
        Evaluation {
            decision,
            decided_by: DecidedBy::Rule,
            matched_rules,
            heuristic: None,
        }
    }
}

/// Adds `path` (a file) or the `*.rules` files of `path` (a directory, sorted by name).
fn collect_rules_files(
    path: &Path,
    missing_ok: bool,
    files: &mut Vec<PathBuf>,
) -> Result<(), LoadError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return if missing_ok {
                Ok(())
            } else {
                Err(LoadError::NotFound {
                    path: path.to_path_buf(),
                })
            };
        }
        Err(source) => {
            return Err(LoadError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !metadata.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let io_error = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_error)? {
        let entry_path = entry.map_err(io_error)?.path();
        if entry_path.extension().is_some_and(|ext| ext == "rules") && entry_path.is_file() {
            found.push(entry_path);
        }
    }
    found.sort();
    files.extend(found);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Policy>();
    }

    #[test]
    fn default_dirs_follow_the_environment() {
        let opts = LoadOptions {
            home: Some(PathBuf::from("/home/u")),
            ..LoadOptions::default()
        };
        assert_eq!(
            opts.default_dirs(),
            vec![
                PathBuf::from("/home/u/.codex/rules"),
                PathBuf::from("/home/u/.config/execgate/rules")
            ]
        );
        let opts = LoadOptions {
            home: Some(PathBuf::from("/home/u")),
            codex_home: Some(PathBuf::from("/c")),
            xdg_config_home: Some(PathBuf::from("/x")),
            ..LoadOptions::default()
        };
        assert_eq!(
            opts.default_dirs(),
            vec![
                PathBuf::from("/c/rules"),
                PathBuf::from("/x/execgate/rules")
            ]
        );
        assert!(LoadOptions::default().default_dirs().is_empty());
    }
}
