//! A loaded policy: where its rules files are found, and how one exec is evaluated.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::decision::{DecidedBy, Decision};
use crate::error::LoadError;
use crate::evaluation::{Evaluation, RuleMatch};
use crate::heuristics;
use crate::lint::{self, RuleWarning};
use crate::rule::{IndexMatch, Layer, RuleOrigin, RuleSet};
use crate::rules_file::{RulesBuilder, parse_file, parse_requirements};

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
    /// Admin rules (`--admin-rules PATH`): `.rules` files or directories, and
    /// `requirements.toml` files (a path ending in `.toml`: its `[rules] prefix_rules`).
    /// Prompt and forbidden only; each must exist.
    pub admin_rules: Vec<PathBuf>,
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
            admin_rules: Vec::new(),
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

/// How [`Policy::evaluate_check`] matches: the flags of `codex execpolicy check`.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// `--resolve-host-executables`: try the basename rules for a program given as a path.
    pub resolve_host_executables: bool,
    /// The directory a relative program path is resolved against (`None`: not resolved).
    pub cwd: Option<PathBuf>,
}

/// One `prefix_rule` call of a loaded policy ([`Policy::listed_rules`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule {
    /// The pattern as written, in Starlark (`["git", ["push", "fetch"]]`).
    pub pattern: String,
    pub decision: Decision,
    pub justification: Option<String>,
    /// Where it was written (`None` for a rule built in code).
    pub origin: Option<RuleOrigin>,
}

/// A loaded exec policy: the rules, indexed by program, plus the heuristics for commands
/// no rule matches. Immutable once loaded; share it across threads.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    set: RuleSet,
    /// The admin layer, matched on its own: no user rule shadows it, no user
    /// `host_executable()` gates it.
    admin: RuleSet,
    network: crate::network::NetworkPolicy,
    sources: Vec<PathBuf>,
    /// Where a later load looks, present or not: the default directories (when loaded)
    /// and every `--rules` and `--admin-rules` path as given.
    looked_in: Vec<PathBuf>,
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
            parse_file(&mut builder, file, &read_text(file)?)?;
        }

        let mut admin = RulesBuilder::new(opts.home.clone());
        admin.layer = Layer::Admin;
        let mut admin_files = Vec::new();
        for path in &opts.admin_rules {
            if path.extension().is_some_and(|ext| ext == "toml") {
                let text = read_text(path)?;
                admin.rules.extend(parse_requirements(path, &text)?);
                admin_files.push(path.clone());
                continue;
            }
            let mut found = Vec::new();
            collect_rules_files(path, false, &mut found)?;
            for file in found {
                parse_file(&mut admin, &file, &read_text(&file)?)?;
                admin_files.push(file);
            }
        }
        let mut policy = Policy::from_builder(builder, files);
        for rule in admin.network_rules {
            policy.network.push(rule);
        }
        policy.admin = RuleSet::new(admin.rules, admin.host_executables);
        policy.sources.extend(admin_files);
        if opts.default_rules {
            policy.looked_in.extend(opts.default_dirs());
        }
        policy.looked_in.extend(opts.rules.iter().cloned());
        policy.looked_in.extend(opts.admin_rules.iter().cloned());
        Ok(policy)
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
            admin: RuleSet::default(),
            network: crate::network::NetworkPolicy::new(builder.network_rules),
            sources,
            looked_in: Vec::new(),
        }
    }

    /// How many prefix rules were loaded (a rule whose first token lists alternatives
    /// counts once per alternative, as Codex indexes it).
    pub fn rule_count(&self) -> usize {
        self.set.rules.len() + self.admin.rules.len()
    }

    /// How many of [`Policy::rule_count`] are admin rules.
    pub fn admin_rule_count(&self) -> usize {
        self.admin.rules.len()
    }

    /// How many `network_rule(...)` calls were accepted.
    pub fn network_rule_count(&self) -> usize {
        self.network.rules().len()
    }

    /// The `network_rule(...)` calls of every file (admin ones too), for the egress proxy.
    pub fn network(&self) -> &crate::network::NetworkPolicy {
        &self.network
    }

    /// The rules files loaded, in order (the admin files last).
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// Every path the next load reads or looks in: the files loaded, the default
    /// directories (when loaded) and the `--rules`/`--admin-rules` paths, existing or not.
    /// A sandbox keeps them all read-only, absent ones included: a session must not write
    /// or create a rule the next session would load.
    pub fn paths_read(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .sources
            .iter()
            .chain(&self.looked_in)
            .cloned()
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// Evaluates one command the way `codex execpolicy check --resolve-host-executables`
    /// does. `program` is the executable as exec'd (an absolute path, or a bare name);
    /// `argv` is the full argv, `argv[0]` included (and ignored: `program` stands in its
    /// place).
    ///
    /// The rules whose program token is `program`, byte for byte, match first; only when
    /// none does and `program` is an absolute path are the rules for its basename tried
    /// (the path normalised lexically), and then only if no `host_executable()` for that
    /// name excludes the path. The supervisor decides real execs with
    /// [`Policy::evaluate_exec`] instead; `execgate check` uses [`Policy::evaluate_check`].
    pub fn evaluate(&self, program: &str, argv: &[String]) -> Evaluation {
        let args = argv.get(1..).unwrap_or_default();
        let found = self.layers(|set| set.matches_codex(program, args, true, None));
        self.evaluation(program, args, found)
    }

    /// Evaluates `argv` exactly as `codex execpolicy check` does with the same flags: the
    /// rules whose program token is `argv[0]`, byte for byte; with
    /// [`CheckOptions::resolve_host_executables`] and no such rule, an `argv[0]` holding a
    /// `/` is resolved (against [`CheckOptions::cwd`] when relative, then normalised
    /// lexically) and the rules for its basename match unless a `host_executable()`
    /// excludes the path.
    pub fn evaluate_check(&self, argv: &[String], options: &CheckOptions) -> Evaluation {
        let Some((program, args)) = argv.split_first() else {
            return self.evaluation("", &[], Vec::new());
        };
        let found = self.layers(|set| {
            set.matches_codex(
                program,
                args,
                options.resolve_host_executables,
                options.cwd.as_deref(),
            )
        });
        self.evaluation(program, args, found)
    }

    /// Evaluates one exec the kernel is about to run, for the supervisor: allow matches
    /// narrowly, deny matches broadly. `program` is the absolute path the kernel will
    /// execute, as the caller wrote it resolved against its cwd (`/work/x/ls`, `/tmp/git`);
    /// `argv` as for [`Policy::evaluate`].
    ///
    /// Every rule [`Policy::evaluate`] matches matches here too, so `allow` rules match as
    /// there (exact path first, then the basename if `host_executable()` permits the path).
    /// On top of that every `forbidden` and `prompt` rule whose program token has
    /// `program`'s basename matches (`git`, and `/usr/bin/git` too, match `/tmp/git`),
    /// whatever `host_executable()` and the exact-path rules say; the strictest decision
    /// wins. An `allow` that wins is a claim about the name only: the caller must check
    /// that the file is the one the rule names (see [`RuleMatch::matched_by`] and
    /// [`Policy::host_executable_paths`]).
    pub fn evaluate_exec(&self, program: &str, argv: &[String]) -> Evaluation {
        let args = argv.get(1..).unwrap_or_default();
        let found = self.layers(|set| set.matches_exec(program, args));
        self.evaluation(program, args, found)
    }

    /// The absolute paths `host_executable(name=..., paths=[...])` pinned `name` to
    /// (normalised lexically, `~/` expanded), or `None` when no `host_executable()` names
    /// it. A later call for the same name replaces an earlier one, as in Codex.
    pub fn host_executable_paths(&self, name: &str) -> Option<&[PathBuf]> {
        self.set.host_executables.get(name).map(Vec::as_slice)
    }

    /// Every `prefix_rule` call as loaded, admin layer first, then in load order (a call
    /// whose first token lists alternatives is one entry, as written).
    pub fn listed_rules(&self) -> Vec<ListedRule> {
        let mut listed: Vec<ListedRule> = Vec::new();
        for set in [&self.admin, &self.set] {
            let mut last: Option<&Arc<str>> = None;
            for rule in &set.rules {
                // The rules one call expanded into share its rendering.
                if last.is_some_and(|w| Arc::ptr_eq(w, &rule.written)) {
                    continue;
                }
                last = Some(&rule.written);
                listed.push(ListedRule {
                    pattern: rule.written.to_string(),
                    decision: rule.decision,
                    justification: rule.justification.clone(),
                    origin: rule.origin.clone(),
                });
            }
        }
        listed
    }

    /// The `host_executable()` definitions in force, by name.
    pub fn host_executables(&self) -> Vec<(String, Vec<PathBuf>)> {
        let mut all: Vec<(String, Vec<PathBuf>)> = self
            .set
            .host_executables
            .iter()
            .map(|(name, paths)| (name.clone(), paths.clone()))
            .collect();
        all.sort();
        all
    }

    /// The `allow` rules that hand out code execution (shells, interpreters, build tools,
    /// wrappers, `git` with hooks and config, ...), in rule order, one warning per
    /// `prefix_rule` call and reason. See [`crate::lint`] for the table.
    pub fn lint(&self) -> Vec<RuleWarning> {
        lint::lint_rules(&self.set.rules)
    }

    /// The matches of the admin layer, then of the user's rules, each layer matched on its
    /// own.
    fn layers(&self, matches: impl Fn(&RuleSet) -> Vec<IndexMatch>) -> Vec<(&RuleSet, IndexMatch)> {
        let mut found: Vec<(&RuleSet, IndexMatch)> = Vec::new();
        if !self.admin.rules.is_empty() {
            found.extend(matches(&self.admin).into_iter().map(|m| (&self.admin, m)));
        }
        found.extend(matches(&self.set).into_iter().map(|m| (&self.set, m)));
        found
    }

    fn evaluation(
        &self,
        program: &str,
        args: &[String],
        found: Vec<(&RuleSet, IndexMatch)>,
    ) -> Evaluation {
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
            .map(|(set, m)| {
                let rule = &set.rules[m.rule];
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

/// A rules file's text (UTF-8).
fn read_text(file: &Path) -> Result<String, LoadError> {
    let bytes = std::fs::read(file).map_err(|source| LoadError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8 {
        path: file.to_path_buf(),
    })
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

    use crate::{Decision, MatchedBy};

    fn argv(command: &str) -> Vec<String> {
        shlex::split(command).expect("test command")
    }

    fn exec(policy: &Policy, program: &str, command: &str) -> Evaluation {
        policy.evaluate_exec(program, &argv(command))
    }

    fn check(policy: &Policy, program: &str, command: &str) -> Evaluation {
        policy.evaluate(program, &argv(command))
    }

    const PINNED_GIT: &str = r#"
host_executable(name = "git", paths = ["/usr/bin/git"])
prefix_rule(pattern = ["git", "push"], decision = "forbidden")
prefix_rule(pattern = ["git", "status"], decision = "allow")
"#;

    #[test]
    fn deny_matches_any_path_with_the_basename_despite_host_executable() {
        let policy = Policy::from_source("t.rules", PINNED_GIT).unwrap();
        // Codex's matching (and `execgate check`) keep the bug compatible:
        // openai/codex#37079.
        assert_eq!(
            check(&policy, "/tmp/git", "git push").decided_by,
            DecidedBy::Heuristics
        );
        for program in [
            "/tmp/git",
            "/usr/bin/git",
            "/work/x/git",
            "/usr/bin/../../tmp/git",
        ] {
            let e = exec(&policy, program, "git push origin main");
            assert_eq!(e.decision, Decision::Forbidden, "{program}");
            assert_eq!(e.decided_by, DecidedBy::Rule);
            assert_eq!(e.matched_rules.len(), 1);
            assert_eq!(e.matched_rules[0].matched_prefix, ["git", "push"]);
            assert_eq!(e.matched_rules[0].matched_by(), MatchedBy::Basename);
        }
        let e = exec(&policy, "/tmp/git", "git push");
        assert_eq!(
            e.matched_rules[0].resolved_program,
            Some(PathBuf::from("/tmp/git"))
        );
    }

    #[test]
    fn allow_matches_as_codex_does() {
        let policy = Policy::from_source("t.rules", PINNED_GIT).unwrap();
        let pinned = exec(&policy, "/usr/bin/git", "git status");
        assert_eq!(pinned.decision, Decision::Allow);
        assert_eq!(pinned.decided_by, DecidedBy::Rule);
        assert_eq!(pinned.matched_rules[0].matched_prefix, ["git", "status"]);
        assert_eq!(pinned.matched_rules[0].matched_by(), MatchedBy::Basename);
        assert_eq!(pinned, check(&policy, "/usr/bin/git", "git status"));
        // Outside the pin: no allow rule matches, the heuristics decide.
        let other = exec(&policy, "/tmp/git", "git status");
        assert_eq!(other.decided_by, DecidedBy::Heuristics);
        assert!(other.matched_rules.is_empty());
        assert_eq!(
            policy.host_executable_paths("git"),
            Some(&[PathBuf::from("/usr/bin/git")][..])
        );
        assert_eq!(policy.host_executable_paths("ls"), None);
    }

    #[test]
    fn deny_wins_over_exact_path_allow_rules() {
        let policy = Policy::from_source(
            "t.rules",
            r#"
prefix_rule(pattern = ["/usr/bin/git"], decision = "allow")
prefix_rule(pattern = ["git", "push"], decision = "prompt")
prefix_rule(pattern = ["git", "push", "--force"], decision = "forbidden")
"#,
        )
        .unwrap();
        // Codex: the exact-path rule shadows the basename rules.
        let codex = check(&policy, "/usr/bin/git", "git push --force");
        assert_eq!(codex.decision, Decision::Allow);

        let e = exec(&policy, "/usr/bin/git", "git push --force");
        assert_eq!(e.decision, Decision::Forbidden);
        let got: Vec<(&str, MatchedBy)> = e
            .matched_rules
            .iter()
            .map(|m| (m.matched_prefix[0].as_str(), m.matched_by()))
            .collect();
        assert_eq!(
            got,
            [
                ("/usr/bin/git", MatchedBy::ExactPath),
                ("git", MatchedBy::Basename),
                ("git", MatchedBy::Basename)
            ]
        );
        assert_eq!(
            exec(&policy, "/usr/bin/git", "git push").decision,
            Decision::Prompt
        );
        assert_eq!(
            exec(&policy, "/usr/bin/git", "git log").decision,
            Decision::Allow
        );
    }

    #[test]
    fn path_deny_rules_match_their_basename_anywhere() {
        let policy = Policy::from_source(
            "t.rules",
            r#"
prefix_rule(pattern = ["/usr/bin/rm", "-rf"], decision = "forbidden")
prefix_rule(pattern = ["/usr/bin/ls"], decision = "allow")
"#,
        )
        .unwrap();
        // /bin/rm on a merged /usr, a symlinked directory, a copy named rm.
        for program in ["/usr/bin/rm", "/bin/rm", "/tmp/s/rm", "/work/rm"] {
            let e = exec(&policy, program, "rm -rf /");
            assert_eq!(e.decision, Decision::Forbidden, "{program}");
            assert_eq!(e.matched_rules[0].matched_prefix, ["/usr/bin/rm", "-rf"]);
        }
        assert_eq!(
            exec(&policy, "/usr/bin/rm", "rm -rf /").matched_rules[0].matched_by(),
            MatchedBy::ExactPath
        );
        assert_eq!(
            exec(&policy, "/bin/rm", "rm -rf /").matched_rules[0].matched_by(),
            MatchedBy::Basename
        );
        // Allow stays narrow: an absolute allow rule matches its path only.
        assert_eq!(
            exec(&policy, "/usr/bin/ls", "ls").decided_by,
            DecidedBy::Rule
        );
        assert_eq!(
            exec(&policy, "/usr/bin/ls", "ls").matched_rules[0].matched_by(),
            MatchedBy::ExactPath
        );
        assert_eq!(
            exec(&policy, "/tmp/ls", "ls").decided_by,
            DecidedBy::Heuristics
        );
    }

    #[test]
    fn bare_allow_rules_match_any_basename_and_say_so() {
        let policy = Policy::from_source("t.rules", r#"prefix_rule(pattern = ["ls"])"#).unwrap();
        // The supervisor must check the file: the match says it was by basename.
        let e = exec(&policy, "/work/x/ls", "ls -la");
        assert_eq!(e.decision, Decision::Allow);
        assert_eq!(e.matched_rules[0].matched_by(), MatchedBy::Basename);
        assert_eq!(
            e.matched_rules[0].resolved_program,
            Some(PathBuf::from("/work/x/ls"))
        );
    }

    #[test]
    fn evaluate_exec_agrees_with_evaluate_without_deny_rules() {
        let policy = Policy::from_source(
            "t.rules",
            r#"
prefix_rule(pattern = ["git", ["status", "log"]])
prefix_rule(pattern = ["/opt/bin/tool"])
host_executable(name = "ls", paths = ["/bin/ls"])
prefix_rule(pattern = ["ls"])
"#,
        )
        .unwrap();
        for (program, command) in [
            ("/usr/bin/git", "git status"),
            ("/usr/bin/git", "git push"),
            ("/opt/bin/tool", "tool x"),
            ("/usr/bin/tool", "tool x"),
            ("/bin/ls", "ls"),
            ("/tmp/ls", "ls"),
            ("/bin/bash", "bash -c 'ls'"),
        ] {
            assert_eq!(
                exec(&policy, program, command),
                check(&policy, program, command),
                "{program} {command}"
            );
        }
    }

    #[test]
    fn admin_layer_decides_run_time_execs_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user.rules");
        std::fs::write(
            &user,
            "prefix_rule(pattern = [\"/usr/bin/git\", \"push\"])\nprefix_rule(pattern = [\"git\"])\n",
        )
        .unwrap();
        let admin = dir.path().join("requirements.toml");
        std::fs::write(
            &admin,
            "[rules]\nprefix_rules = [{ pattern = [{ token = \"git\" }, { token = \"push\" }], decision = \"prompt\" }]\n",
        )
        .unwrap();
        let opts = LoadOptions {
            rules: vec![user],
            admin_rules: vec![admin.clone()],
            ..LoadOptions::default()
        };
        let policy = Policy::load(&opts).unwrap();
        assert_eq!(policy.admin_rule_count(), 1);
        for program in ["/usr/bin/git", "/tmp/git"] {
            let e = exec(&policy, program, "git push origin");
            assert_eq!(e.decision, Decision::Prompt, "{program}");
            let origin = e.matched_rules[0].origin.as_ref().unwrap();
            assert_eq!(origin.layer, Layer::Admin);
            assert_eq!(
                e.reason(),
                format!(
                    "prompt by rule `git push` ({}:2, admin rules)",
                    admin.display()
                )
            );
        }
        // Without the admin layer the user's exact-path allow decides.
        let user_only = Policy::load(&LoadOptions {
            admin_rules: Vec::new(),
            ..opts
        })
        .unwrap();
        assert_eq!(
            exec(&user_only, "/usr/bin/git", "git push").decision,
            Decision::Allow
        );
    }

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
