//! Allow rules that hand out a shell: `allow` rules on programs that run code taken from
//! their arguments, their environment or the working tree.
//!
//! A rule-allowed command runs escalated, outside the sandbox, and so does everything it
//! starts. `["bash"]`, `["python3"]`, `["make"]`, `["find"]` or a bare `["git"]` therefore
//! allow anything: `bash -c ...`, a `conftest.py`, a make recipe, `find -exec`, a git hook
//! or alias. [`crate::Policy::lint`] names such rules with file:line, why, and what to
//! write instead. It only reads the loaded rules; it never changes a decision.
//!
//! # How a rule is judged
//!
//! The rule's program token (its basename: `/usr/bin/bash` is `bash`) is looked up in
//! [`TABLE`]; a `*` at the end of a table name matches any suffix (`python*`: `python3`,
//! `python3.12`). The first pattern token after the program decides (every alternative of
//! an alternatives token must qualify):
//!
//! - no further token (`["git"]`): [`Risk::RunsCode`];
//! - a *safe* token (`["cargo", "--version"]`): no warning. Safe tokens make the program
//!   do one harmless thing and exit whatever follows them (a prefix rule allows any
//!   continuation: `["find", "."]` allows `find . -exec sh`, so most entries have none
//!   but `--version`/`--help`);
//! - a *config* token (`["git", "status"]`): [`Risk::RunsRepositoryConfig`]: the command
//!   runs what the repository's config and hooks name (git's `core.fsmonitor`, diff
//!   drivers and textconv, filters, the pager), harmless in a trusted repository only;
//! - any other token (`["git", "commit"]`, `["npm", "test"]`): [`Risk::RunsCode`].
//!
//! `forbidden` and `prompt` rules are never named: they do not escalate anything by
//! themselves (a person approves each `prompt`).
//!
//! # The table
//!
//! | programs | safe first tokens | config first tokens | runs code through |
//! |---|---|---|---|
//! | shells: `bash` `sh` `zsh` `dash` `fish` `ksh` `mksh` `ash` `csh` `tcsh` `busybox` `pwsh` `nu` `xonsh` `elvish` | `--version` `--help` | | `-c`, script files, `BASH_ENV`/`ENV`, rc files |
//! | interpreters: `python*` `pypy*` `perl*` `php*` `node` `nodejs` `deno` `bun` `tclsh` `wish` `Rscript` `julia` `osascript` | `--version` `--help` `-V` (`-v` for perl, php, node) | | `-c`/`-e`, scripts and modules from the tree (`-m pytest` runs `conftest.py`) |
//! | `ruby*` `irb` `lua*` `luajit` | `--version` `--help` | | `-e`, scripts (`ruby -v` and `lua -v` go on to run what follows) |
//! | build tools: `make` `gmake` `cmake` `ninja` `meson` `scons` `just` `mvn` `gradle` `gradlew` `ant` `sbt` `rake` | `--version` `--help` | | recipes and build files of the tree (`make -n` still runs `$(shell)`), `cmake -E` |
//! | `cargo` | `--version` `-V` `version` `--list` | | build scripts and proc macros (`build`, `check`, `test`, `run`, `clippy`, `doc`, `install`), `.cargo/config.toml` runners and wrappers |
//! | `go` | `version` `env` `help` | | `go run`/`test`/`generate`, `-toolexec`, cgo |
//! | `npm` | `--version` `-v` `view` `info` `show` `ls` `list` `outdated` `search` | | `run`, `test`, `start`, `exec`, `install`/`ci` lifecycle scripts, `explore` |
//! | `pnpm` | `--version` `-v` `view` `info` `ls` `list` `outdated` | | as npm |
//! | `yarn` `npx` `pnpx` `bunx` | | | scripts; yarn runs the tree's `yarnPath` even for `--version` |
//! | Python tools: `pip*` `uv` `uvx` `poetry` `pipenv` `pytest` `tox` `nox` | `--version` `-V` (`list` `show` `freeze` for pip) | | `setup.py` of sdists, `conftest.py`, `noxfile.py`, `uv run` |
//! | `find` `fd` `fdfind` | `--version` `--help` | | `-exec`, `-execdir`, `-ok`, `-okdir`, `-delete` (`fd -x`) |
//! | wrappers: `xargs` `env` `nice` `nohup` `timeout` `time` `watch` `setsid` `stdbuf` `ionice` `chrt` `taskset` `flock` `unshare` `nsenter` `chroot` `systemd-run` `script` `parallel` `strace` `ltrace` `gdb` | `--version` `--help` | | the command they are given |
//! | `sudo` `su` `doas` `runuser` `pkexec` | `--version` `--help` (`-V` for sudo) | | any command, as another user |
//! | `ssh` `scp` `sftp` | `-V` | | the remote command, `ProxyCommand`/`LocalCommand` (`-o`, `-F`), `scp -S` |
//! | `rsync` | `--version` `--help` | | `-e`/`--rsh`, `--rsync-path` |
//! | `git` | `--version` `version` | `status` `log` `diff` `show` `blame` `annotate` `branch` `tag` `describe` `shortlog` `reflog` `ls-files` `ls-tree` `rev-parse` `rev-list` `cat-file` `grep` `remote` `show-ref` `for-each-ref` `name-rev` `whatchanged` `help` `--help` | hooks, aliases, `-c`/`--config-env`/`-C`, `config`, `--upload-pack`/`--receive-pack`, `rebase -x`, `bisect run`, `submodule foreach`, `difftool -x`, `core.sshCommand` (`commit`, `push`, `pull`, `merge`, `rebase`, `fetch`, `clone`, ... and the bare `git`) |
//! | `awk` `gawk` `mawk` `nawk` | `--version` `--help` | | `system()`, pipes to and from commands |
//! | `sed` `gsed` | `--version` `--help` | | GNU sed's `e` command and `s///e` |
//! | `tar` `gtar` | `--version` `--help` | | `--to-command`, `--checkpoint-action=exec`, `-I`/`--use-compress-program` |
//! | `docker` `podman` | `--version` `version` `ps` `images` | | `run`/`exec` with any image and command, and the host's root through the daemon |
//! | pagers and editors: `less` `more` `most` `man` `vi` `vim` `nvim` `view` `vimdiff` `ex` `ed` `emacs` `nano` `pico` | `--version` `--help` | | shell escapes (`!cmd`, `:!`), `man -P`, modelines, `.exrc` |
//!
//! Not named: programs that only read or print (`ls`, `cat`, `grep`, `wc`, ...) and rules
//! narrowed to a safe first token.

use crate::rule::{PrefixRule, basename};
use crate::{Decision, RuleOrigin};

/// How much an `allow` rule hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Risk {
    /// The command runs commands its repository's config or hooks name (`git status`):
    /// harmless in a repository the user trusts, a way out of the sandbox in one the agent
    /// could write.
    RunsRepositoryConfig,
    /// The command runs code taken from its arguments, environment or working tree: the
    /// rule hands out a shell outside the sandbox.
    RunsCode,
}

impl Risk {
    /// A few words for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::RunsCode => "runs code",
            Risk::RunsRepositoryConfig => "runs the repository's config",
        }
    }
}

/// One `allow` rule that hands out code execution.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleWarning {
    /// Where the rule was written (`None` only for rules built without a file).
    pub origin: Option<RuleOrigin>,
    /// The pattern as written in the rules file, as Starlark (`["git"]`).
    pub pattern: String,
    /// The program token that was judged (one alternative of the first token).
    pub program: String,
    /// How much the rule hands out.
    pub risk: Risk,
    /// Why: what the program runs.
    pub why: String,
    /// What to write instead.
    pub instead: String,
}

impl std::fmt::Display for RuleWarning {
    /// `FILE:LINE: allow rule PATTERN RISK: WHY; instead, INSTEAD`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        write!(
            f,
            "allow rule {} {} outside the sandbox: {}; instead, {}",
            self.pattern,
            self.risk.as_str(),
            self.why,
            self.instead
        )
    }
}

/// One row of [`TABLE`].
#[derive(Debug)]
pub struct Entry {
    /// Program names; a trailing `*` matches any suffix.
    pub programs: &'static [&'static str],
    /// First tokens after the program that make the rule harmless.
    pub safe: &'static [&'static str],
    /// First tokens after the program that only run the repository's config.
    pub config: &'static [&'static str],
    /// Why a rule on this program runs code.
    pub why: &'static str,
    /// Why a rule narrowed to a config token still runs the repository's config.
    pub config_why: &'static str,
    /// What to write instead.
    pub instead: &'static str,
}

const VERSION_HELP: &[&str] = &["--version", "--help"];

const SANDBOX_INSTEAD: &str = "leave it to the sandbox (no rule: it runs sandboxed when the heuristics allow it), or use `prompt`";

/// The programs that run code from their arguments, environment or working tree (see the
/// module doc for the same table as prose).
pub const TABLE: &[Entry] = &[
    Entry {
        programs: &[
            "bash", "sh", "zsh", "dash", "fish", "ksh", "mksh", "ash", "csh", "tcsh", "busybox",
            "pwsh", "nu", "xonsh", "elvish",
        ],
        safe: VERSION_HELP,
        config: &[],
        why: "a shell runs any command line it is given (`-c`, a script file, `BASH_ENV`)",
        config_why: "",
        instead: "allow the commands the script runs, each by its own rule, and let the shell run sandboxed (no rule)",
    },
    Entry {
        programs: &[
            "python*",
            "pypy*",
            "tclsh",
            "wish",
            "Rscript",
            "julia",
            "osascript",
            "deno",
            "bun",
        ],
        safe: &["--version", "--help", "-V"],
        config: &[],
        why: "an interpreter runs any code it is given (`-c`, a script, a module such as `-m pytest` that imports the tree's `conftest.py`)",
        config_why: "",
        instead: SANDBOX_INSTEAD,
    },
    Entry {
        programs: &["perl*", "php*", "node", "nodejs"],
        safe: &["--version", "--help", "-v"],
        config: &[],
        why: "an interpreter runs any code it is given (`-e`, a script)",
        config_why: "",
        instead: SANDBOX_INSTEAD,
    },
    Entry {
        programs: &["ruby*", "irb", "lua*", "luajit"],
        safe: VERSION_HELP,
        config: &[],
        why: "an interpreter runs any code it is given (`-e`, a script; `-v` goes on to run what follows)",
        config_why: "",
        instead: SANDBOX_INSTEAD,
    },
    Entry {
        programs: &[
            "make", "gmake", "cmake", "ninja", "meson", "scons", "just", "mvn", "gradle",
            "gradlew", "ant", "sbt", "rake",
        ],
        safe: VERSION_HELP,
        config: &[],
        why: "a build tool runs the recipes of the working tree's build files (`make -n` still runs `$(shell ...)`; `cmake -E` runs commands)",
        config_why: "",
        instead: "let builds run sandboxed (no rule), or use `prompt`",
    },
    Entry {
        programs: &["cargo"],
        safe: &["--version", "-V", "version", "--list"],
        config: &[],
        why: "cargo runs the tree's build scripts and proc macros (`build`, `check`, `test`, `run`, `clippy`) and the runners and wrappers `.cargo/config.toml` names",
        config_why: "",
        instead: "let builds and tests run sandboxed (no rule); allow only queries such as `[\"cargo\", \"--version\"]`",
    },
    Entry {
        programs: &["go"],
        safe: &["version", "env", "help"],
        config: &[],
        why: "go runs code from the tree (`run`, `test`, `generate`) and the tools `-toolexec` names",
        config_why: "",
        instead: "let builds and tests run sandboxed (no rule); allow only `[\"go\", \"version\"]`-style queries",
    },
    Entry {
        programs: &["npm"],
        safe: &[
            "--version",
            "-v",
            "view",
            "info",
            "show",
            "ls",
            "list",
            "outdated",
            "search",
        ],
        config: &[],
        why: "npm runs package.json scripts (`run`, `test`, `start`, `exec`, and lifecycle scripts of `install`/`ci`)",
        config_why: "",
        instead: "pin read-only subcommands (`[\"npm\", \"view\"]`, `[\"npm\", \"ls\"]`) and let scripts run sandboxed",
    },
    Entry {
        programs: &["pnpm"],
        safe: &["--version", "-v", "view", "info", "ls", "list", "outdated"],
        config: &[],
        why: "pnpm runs package.json scripts (`run`, `test`, `exec`, `dlx`, and lifecycle scripts of `install`)",
        config_why: "",
        instead: "pin read-only subcommands (`[\"pnpm\", \"ls\"]`) and let scripts run sandboxed",
    },
    Entry {
        programs: &["yarn", "npx", "pnpx", "bunx"],
        safe: &[],
        config: &[],
        why: "it runs package scripts or downloaded packages (bare `yarn` installs with lifecycle scripts; yarn runs the tree's `yarnPath` even for `--version`)",
        config_why: "",
        instead: SANDBOX_INSTEAD,
    },
    Entry {
        programs: &[
            "pip*", "uv", "uvx", "poetry", "pipenv", "pytest", "tox", "nox",
        ],
        safe: &["--version", "-V", "list", "show", "freeze"],
        config: &[],
        why: "it runs Python code from the tree or from packages (`setup.py` of source packages, `conftest.py`, `noxfile.py`, `uv run`)",
        config_why: "",
        instead: "let installs and tests run sandboxed (no rule); allow only queries such as `[\"pip\", \"list\"]`",
    },
    Entry {
        programs: &["find", "fd", "fdfind"],
        safe: VERSION_HELP,
        config: &[],
        why: "find runs commands and deletes files (`-exec`, `-execdir`, `-ok`, `-delete`; `fd -x`), and a prefix rule allows any of them after the pinned tokens",
        config_why: "",
        instead: "leave find to the sandbox (no rule: the heuristics allow a plain `find`)",
    },
    Entry {
        programs: &[
            "xargs",
            "env",
            "nice",
            "nohup",
            "timeout",
            "time",
            "watch",
            "setsid",
            "stdbuf",
            "ionice",
            "chrt",
            "taskset",
            "flock",
            "unshare",
            "nsenter",
            "chroot",
            "systemd-run",
            "script",
            "parallel",
            "strace",
            "ltrace",
            "gdb",
        ],
        safe: VERSION_HELP,
        config: &[],
        why: "it runs whatever command it is given, escalated too",
        config_why: "",
        instead: "write the rule for the wrapped command itself (`[\"ls\"]`, not `[\"env\"]`)",
    },
    Entry {
        programs: &["sudo", "su", "doas", "runuser", "pkexec"],
        safe: &["--version", "--help", "-V"],
        config: &[],
        why: "it runs any command as another user, root included",
        config_why: "",
        instead: "use `prompt` or `forbidden`; grant the one privileged command in sudoers instead",
    },
    Entry {
        programs: &["ssh", "scp", "sftp"],
        safe: &["-V"],
        config: &[],
        why: "ssh runs the remote command it is given and local commands (`ProxyCommand`, `LocalCommand` through `-o` or `-F`; `scp -S`)",
        config_why: "",
        instead: "use `prompt`",
    },
    Entry {
        programs: &["rsync"],
        safe: VERSION_HELP,
        config: &[],
        why: "rsync runs the command `-e`/`--rsh` or `--rsync-path` name",
        config_why: "",
        instead: SANDBOX_INSTEAD,
    },
    Entry {
        programs: &["git"],
        safe: &["--version", "version"],
        config: &[
            "status",
            "log",
            "diff",
            "show",
            "blame",
            "annotate",
            "branch",
            "tag",
            "describe",
            "shortlog",
            "reflog",
            "ls-files",
            "ls-tree",
            "rev-parse",
            "rev-list",
            "cat-file",
            "grep",
            "remote",
            "show-ref",
            "for-each-ref",
            "name-rev",
            "whatchanged",
            "help",
            "--help",
        ],
        why: "git runs hooks, aliases and the commands config and options name (`-c`, `-C`, `config`, `core.sshCommand`, `--upload-pack`, `rebase -x`, `bisect run`, `submodule foreach`)",
        config_why: "git reads the repository's config, which can run commands (`core.fsmonitor`, diff drivers and textconv, filters, the pager, hooks such as `reference-transaction`)",
        instead: "allow only the read-only subcommands you need (`[\"git\", \"status\"]`) and only if the repositories are trusted; leave the rest to the sandbox",
    },
    Entry {
        programs: &["awk", "gawk", "mawk", "nawk"],
        safe: VERSION_HELP,
        config: &[],
        why: "awk programs run commands (`system()`, `\"cmd\" | getline`, `print | \"cmd\"`)",
        config_why: "",
        instead: SANDBOX_INSTEAD,
    },
    Entry {
        programs: &["sed", "gsed"],
        safe: VERSION_HELP,
        config: &[],
        why: "GNU sed runs commands (the `e` command, `s///e`)",
        config_why: "",
        instead: SANDBOX_INSTEAD,
    },
    Entry {
        programs: &["tar", "gtar"],
        safe: VERSION_HELP,
        config: &[],
        why: "tar runs commands (`--to-command`, `--checkpoint-action=exec`, `--use-compress-program`/`-I`)",
        config_why: "",
        instead: SANDBOX_INSTEAD,
    },
    Entry {
        programs: &["docker", "podman"],
        safe: &["--version", "version", "ps", "images"],
        config: &[],
        why: "it runs any image with any command (`run`, `exec`), and the daemon hands out the host's root",
        config_why: "",
        instead: "use `prompt`; allow only listings such as `[\"docker\", \"ps\"]`",
    },
    Entry {
        programs: &[
            "less", "more", "most", "man", "vi", "vim", "nvim", "view", "vimdiff", "ex", "ed",
            "emacs", "nano", "pico",
        ],
        safe: VERSION_HELP,
        config: &[],
        why: "pagers and editors have shell escapes (`!cmd`, `:!cmd`, `man -P`, modelines)",
        config_why: "",
        instead: SANDBOX_INSTEAD,
    },
];

/// The table row for `program` (a token or a path: its basename is looked up).
pub fn entry_for(program: &str) -> Option<&'static Entry> {
    let name = basename(program)?;
    TABLE.iter().find(|entry| {
        entry
            .programs
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => *pattern == name,
            })
    })
}

/// What an `allow` rule for `program` followed by `rest` hands out, by the table: `None`
/// when nothing (not in the table, or narrowed to a safe token).
fn judge(entry: &Entry, first_arg: Option<&[String]>) -> Option<Risk> {
    let Some(alternatives) = first_arg else {
        return Some(Risk::RunsCode);
    };
    let in_list = |list: &[&str]| alternatives.iter().all(|alt| list.contains(&alt.as_str()));
    if in_list(entry.safe) {
        return None;
    }
    let safe_or_config = alternatives
        .iter()
        .all(|alt| entry.safe.contains(&alt.as_str()) || entry.config.contains(&alt.as_str()));
    if safe_or_config {
        Some(Risk::RunsRepositoryConfig)
    } else {
        Some(Risk::RunsCode)
    }
}

/// The warnings for `rules`, in rule order; the rules one `prefix_rule` call expanded into
/// (first-token alternatives) warn once per table row and risk.
pub(crate) fn lint_rules(rules: &[PrefixRule]) -> Vec<RuleWarning> {
    let mut warnings: Vec<(RuleWarning, &'static Entry)> = Vec::new();
    for rule in rules {
        if rule.decision != Decision::Allow {
            continue;
        }
        let Some(entry) = entry_for(&rule.program) else {
            continue;
        };
        let first_arg = rule.rest.first().map(|token| token.alternatives());
        let Some(risk) = judge(entry, first_arg) else {
            continue;
        };
        let duplicate = warnings.iter().any(|(w, e)| {
            std::ptr::eq(*e, entry)
                && w.risk == risk
                && w.origin == rule.origin
                && *w.pattern == *rule.written
        });
        if duplicate {
            continue;
        }
        let why = match risk {
            Risk::RunsCode => entry.why,
            Risk::RunsRepositoryConfig => entry.config_why,
        };
        warnings.push((
            RuleWarning {
                origin: rule.origin.clone(),
                pattern: rule.written.to_string(),
                program: rule.program.clone(),
                risk,
                why: why.to_string(),
                instead: entry.instead.to_string(),
            },
            entry,
        ));
    }
    warnings.into_iter().map(|(warning, _)| warning).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    fn lint(source: &str) -> Vec<RuleWarning> {
        Policy::from_source("t.rules", source)
            .expect("rules load")
            .lint()
    }

    /// The risk of `allow` on `pattern` (a Starlark list), or `None` for no warning.
    fn risk(pattern: &str) -> Option<Risk> {
        let warnings = lint(&format!(
            "prefix_rule(pattern = {pattern}, decision = \"allow\")"
        ));
        assert!(warnings.len() <= 1, "{pattern}: {warnings:?}");
        warnings.first().map(|w| w.risk)
    }

    fn names(entry: &Entry) -> Vec<String> {
        entry
            .programs
            .iter()
            .map(|p| match p.strip_suffix('*') {
                Some(prefix) => format!("{prefix}3"),
                None => p.to_string(),
            })
            .collect()
    }

    #[test]
    fn every_entry_names_its_bare_programs_and_spares_its_safe_tokens() {
        for entry in TABLE {
            assert!(!entry.why.is_empty() && !entry.instead.is_empty());
            assert_eq!(entry.config.is_empty(), entry.config_why.is_empty());
            for name in names(entry) {
                assert_eq!(risk(&format!("[{name:?}]")), Some(Risk::RunsCode), "{name}");
                assert_eq!(
                    risk(&format!("[\"/usr/bin/{name}\"]")),
                    Some(Risk::RunsCode),
                    "/usr/bin/{name}"
                );
                assert_eq!(
                    risk(&format!("[{name:?}, \"-c\", \"x\"]")),
                    Some(Risk::RunsCode),
                    "{name} -c"
                );
                for safe in entry.safe {
                    assert_eq!(
                        risk(&format!("[{name:?}, {safe:?}]")),
                        None,
                        "{name} {safe}"
                    );
                }
                for config in entry.config {
                    assert_eq!(
                        risk(&format!("[{name:?}, {config:?}]")),
                        Some(Risk::RunsRepositoryConfig),
                        "{name} {config}"
                    );
                }
            }
        }
    }

    #[test]
    fn programs_that_only_read_are_not_named() {
        for pattern in [
            r#"["ls"]"#,
            r#"["cat"]"#,
            r#"["grep"]"#,
            r#"["wc", "-l"]"#,
            r#"["/usr/bin/ls"]"#,
            r#"["cargo", "--version"]"#,
            r#"["cargo", "-V"]"#,
            r#"["git", "--version"]"#,
            r#"["python3", "--version"]"#,
            r#"["npm", "view"]"#,
            r#"["bash", "--version"]"#,
            r#"["ssh", "-V"]"#,
            // A name that only starts like a table entry.
            r#"["gitk"]"#,
            r#"["shellcheck"]"#,
            r#"["makeinfo"]"#,
        ] {
            assert_eq!(risk(pattern), None, "{pattern}");
        }
    }

    #[test]
    fn shells_and_interpreters_with_code_arguments() {
        for pattern in [
            r#"["bash", "-c"]"#,
            r#"["bash", "script.sh"]"#,
            r#"["sh", "-lc"]"#,
            r#"["zsh"]"#,
            r#"["dash"]"#,
            r#"["fish", "-c"]"#,
            r#"["python3", "-c"]"#,
            r#"["python3.12", "-m", "pytest"]"#,
            r#"["python"]"#,
            r#"["node", "-e"]"#,
            r#"["perl", "-e"]"#,
            r#"["ruby", "-v"]"#,
            r#"["php", "-r"]"#,
            r#"["lua", "-v"]"#,
            r#"["deno", "run"]"#,
            r#"["bun", "x"]"#,
        ] {
            assert_eq!(risk(pattern), Some(Risk::RunsCode), "{pattern}");
        }
    }

    #[test]
    fn build_tools_package_managers_and_wrappers() {
        for pattern in [
            r#"["make"]"#,
            r#"["make", "-n"]"#,
            r#"["gmake", "test"]"#,
            r#"["cmake", "--build"]"#,
            r#"["cmake", "-E"]"#,
            r#"["ninja"]"#,
            r#"["npm", "test"]"#,
            r#"["npm", "run"]"#,
            r#"["npm", "install"]"#,
            r#"["npm", "exec"]"#,
            r#"["yarn"]"#,
            r#"["yarn", "--version"]"#,
            r#"["pnpm", "test"]"#,
            r#"["npx"]"#,
            r#"["cargo"]"#,
            r#"["cargo", "build"]"#,
            r#"["cargo", "test"]"#,
            r#"["cargo", "run"]"#,
            r#"["cargo", "check"]"#,
            r#"["find", "."]"#,
            r#"["find", "-name"]"#,
            r#"["xargs"]"#,
            r#"["env"]"#,
            r#"["nice", "-n", "10"]"#,
            r#"["nohup"]"#,
            r#"["timeout", "10"]"#,
            r#"["time"]"#,
            r#"["watch"]"#,
            r#"["sudo", "ls"]"#,
            r#"["su"]"#,
            r#"["doas"]"#,
            r#"["ssh", "host"]"#,
            r#"["awk"]"#,
            r#"["gawk", "-f"]"#,
            r#"["sed", "-n"]"#,
            r#"["tar", "-xf"]"#,
            r#"["rsync", "-a"]"#,
            r#"["less"]"#,
            r#"["more"]"#,
            r#"["man", "git"]"#,
            r#"["vi"]"#,
            r#"["vim"]"#,
            r#"["emacs"]"#,
            r#"["nano"]"#,
        ] {
            assert_eq!(risk(pattern), Some(Risk::RunsCode), "{pattern}");
        }
    }

    #[test]
    fn git_subcommands_that_run_hooks_aliases_or_options() {
        for pattern in [
            r#"["git"]"#,
            r#"["git", "commit"]"#,
            r#"["git", "push"]"#,
            r#"["git", "pull"]"#,
            r#"["git", "merge"]"#,
            r#"["git", "rebase"]"#,
            r#"["git", "-c"]"#,
            r#"["git", "-C"]"#,
            r#"["git", "config"]"#,
            r#"["git", "fetch"]"#,
            r#"["git", "clone"]"#,
            r#"["git", "submodule"]"#,
            r#"["git", "bisect"]"#,
            r#"["git", "difftool"]"#,
            r#"["git", "lg"]"#,
            r#"["git", ["status", "commit"]]"#,
        ] {
            assert_eq!(risk(pattern), Some(Risk::RunsCode), "{pattern}");
        }
    }

    #[test]
    fn git_read_only_subcommands_run_the_repository_config() {
        for pattern in [
            r#"["git", "status"]"#,
            r#"["git", "log"]"#,
            r#"["git", "diff"]"#,
            r#"["git", "status", "--short"]"#,
            r#"["git", ["status", "log", "--version"]]"#,
        ] {
            assert_eq!(risk(pattern), Some(Risk::RunsRepositoryConfig), "{pattern}");
        }
        let warning = &lint(r#"prefix_rule(pattern = ["git", "status"])"#)[0];
        assert!(warning.why.contains("core.fsmonitor"), "{}", warning.why);
        assert!(warning.instead.contains("trusted"), "{}", warning.instead);
    }

    #[test]
    fn only_allow_rules_are_named() {
        let source = r#"
prefix_rule(pattern = ["bash"], decision = "forbidden")
prefix_rule(pattern = ["git", "push"], decision = "prompt")
"#;
        assert!(lint(source).is_empty());
    }

    #[test]
    fn a_warning_says_where_what_why_and_instead() {
        let source = "\n\nprefix_rule(\n    pattern = [[\"python3\", \"python\"], \"-c\"],\n)\n";
        let warnings = lint(source);
        // One call, one row: one warning for both alternatives.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let w = &warnings[0];
        let origin = w.origin.as_ref().unwrap();
        assert_eq!((origin.file.to_str(), origin.line), (Some("t.rules"), 3));
        assert_eq!(w.pattern, r#"[["python3", "python"], "-c"]"#);
        assert_eq!(w.program, "python3");
        assert_eq!(w.risk, Risk::RunsCode);
        let line = w.to_string();
        assert!(
            line.starts_with(
                r#"t.rules:3: allow rule [["python3", "python"], "-c"] runs code outside the sandbox: an interpreter"#
            ),
            "{line}"
        );
        assert!(
            line.contains("; instead, leave it to the sandbox"),
            "{line}"
        );
    }

    #[test]
    fn alternatives_in_the_first_token_warn_per_row() {
        let warnings = lint(r#"prefix_rule(pattern = [["ls", "bash", "env"]])"#);
        let programs: Vec<&str> = warnings.iter().map(|w| w.program.as_str()).collect();
        assert_eq!(programs, ["bash", "env"]);
    }
}
