//! What decides when no rule matches: two tables (read-only commands allow, dangerous ones
//! prompt) and a default for everything else.
//!
//! The default is **allow** because a command decided by the heuristics runs *inside* the
//! sandbox: the sandbox is the boundary, the heuristics only spare a human from being
//! asked about harmless commands and warn about destructive ones. Only rules escalate.
//!
//! The tables are data (the `pub const`s below, summarised in the README); the functions
//! only read them. Programs are looked up by basename: `/usr/bin/ls` is `ls`.

use crate::decision::Decision;
use crate::evaluation::HeuristicVerdict;
use crate::shell_script;

/// The decision for a command that no rule matches and no table lists.
pub const DEFAULT_DECISION: Decision = Decision::Allow;

/// Programs that only read or print, whatever their arguments.
pub const READ_ONLY: &[&str] = &[
    "[",
    "arch",
    "b2sum",
    "basename",
    "cal",
    "cat",
    "cksum",
    "cmp",
    "column",
    "comm",
    "cut",
    "df",
    "diff",
    "dir",
    "dirname",
    "du",
    "echo",
    "egrep",
    "expand",
    "expr",
    "false",
    "fgrep",
    "file",
    "fold",
    "free",
    "grep",
    "groups",
    "head",
    "hexdump",
    "id",
    "jq",
    "locale",
    "logname",
    "ls",
    "md5sum",
    "nl",
    "nproc",
    "od",
    "printenv",
    "printf",
    "ps",
    "pwd",
    "readlink",
    "realpath",
    "rev",
    "seq",
    "sha1sum",
    "sha224sum",
    "sha256sum",
    "sha384sum",
    "sha512sum",
    "sleep",
    "stat",
    "tac",
    "tail",
    "test",
    "tr",
    "true",
    "tty",
    "uname",
    "unexpand",
    "uptime",
    "vdir",
    "wc",
    "whereis",
    "which",
    "whoami",
    "yes",
];

/// Programs that only read unless given one of these options (which run a program, write
/// a file or delete). A two-character option (`-o`) also matches inside a cluster
/// (`-uo`); a long one also matches as `--opt=value`.
pub const READ_ONLY_UNLESS: &[(&str, &[&str])] = &[
    (
        "find",
        &[
            "-exec", "-execdir", "-ok", "-okdir", "-delete", "-fls", "-fprint", "-fprint0",
            "-fprintf",
        ],
    ),
    ("rg", &["--pre", "--hostname-bin", "--search-zip", "-z"]),
    ("sort", &["-o", "--output"]),
    ("date", &["-s", "--set"]),
    ("base64", &["-o", "--output"]),
];

/// `git` subcommands that only read, when `git`'s first argument is the subcommand and
/// none of [`GIT_READ_ONLY_EXCEPT`] is given.
pub const GIT_READ_ONLY: &[&str] = &[
    "blame",
    "cat-file",
    "describe",
    "diff",
    "grep",
    "log",
    "ls-files",
    "ls-tree",
    "merge-base",
    "rev-list",
    "rev-parse",
    "shortlog",
    "show",
    "show-ref",
    "status",
    "version",
];

/// Options that make a read-only `git` subcommand write a file or run a program.
pub const GIT_READ_ONLY_EXCEPT: &[&str] =
    &["--output", "--ext-diff", "--open-files-in-pager", "-O"];

/// `git` subcommands that only list when every argument is one of these (or none is given).
pub const GIT_LISTING: &[(&str, &[&str])] = &[
    (
        "branch",
        &[
            "--show-current",
            "-a",
            "--all",
            "-r",
            "--remotes",
            "-v",
            "-vv",
            "--list",
        ],
    ),
    ("remote", &["-v", "--verbose"]),
    ("tag", &["-l", "--list"]),
];

/// Programs that always prompt (matched by basename; `mkfs` also covers `mkfs.ext4` etc.).
pub const DANGEROUS_PROGRAMS: &[(&str, &str)] = &[
    ("mkfs", "creates a filesystem, erasing the device"),
    ("mke2fs", "creates a filesystem, erasing the device"),
    ("mkswap", "erases the device"),
    ("fdisk", "rewrites partition tables"),
    ("sfdisk", "rewrites partition tables"),
    ("cfdisk", "rewrites partition tables"),
    ("parted", "rewrites partition tables"),
    ("wipefs", "erases filesystem signatures"),
    ("shred", "overwrites files beyond recovery"),
    ("shutdown", "stops the machine"),
    ("reboot", "restarts the machine"),
    ("halt", "stops the machine"),
    ("poweroff", "stops the machine"),
];

/// Programs that prompt when given one of these options (same option matching as
/// [`READ_ONLY_UNLESS`]).
pub const DANGEROUS_WITH: &[(&str, &[&str], &str)] = &[(
    "rm",
    &["-f", "--force"],
    "deletes without asking for confirmation",
)];

/// `git SUBCOMMAND` with one of these options prompts (same option matching).
pub const GIT_DANGEROUS: &[(&str, &[&str], &str)] = &[
    ("reset", &["--hard"], "discards uncommitted changes"),
    (
        "push",
        &[
            "-f",
            "--force",
            "--force-with-lease",
            "--mirror",
            "--delete",
            "-d",
        ],
        "rewrites or deletes history on the remote",
    ),
    ("clean", &["-f", "--force"], "deletes untracked files"),
    (
        "branch",
        &["-D"],
        "deletes a branch whether or not it was merged",
    ),
];

/// Programs that prompt when recursive (`-R`, `--recursive`) on the root directory `/`.
pub const DANGEROUS_RECURSIVE_ON_ROOT: &[&str] = &["chmod", "chown", "chgrp"];

/// Programs that run another command: that command is judged instead. The list holds the
/// wrapper's options that take a value, and how many operands precede the command.
pub const WRAPPERS: &[(&str, &[&str], usize)] = &[
    (
        "sudo",
        &[
            "-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U", "-T", "-R",
        ],
        0,
    ),
    ("doas", &["-u", "-C"], 0),
    ("env", &["-u", "-C"], 0),
    ("nohup", &[], 0),
    ("nice", &["-n"], 0),
    ("timeout", &["-s", "-k"], 1),
    (
        "xargs",
        &["-I", "-n", "-P", "-d", "-L", "-s", "-a", "-E"],
        0,
    ),
];

/// Shells whose `-c SCRIPT` is judged command by command when the script is plain.
pub const SHELLS: &[&str] = &["bash", "sh", "zsh", "dash", "ksh"];

/// How deep `sudo bash -c 'sudo ...'` nesting is followed before giving up (default).
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    ReadOnly,
    Dangerous,
    Unlisted,
}

#[derive(Debug)]
struct Judgement {
    class: Class,
    reason: String,
}

impl Judgement {
    fn new(class: Class, reason: impl Into<String>) -> Self {
        Judgement {
            class,
            reason: reason.into(),
        }
    }
}

/// Judges one command that no rule matched. `program` may be a path; `args` excludes
/// `argv[0]`.
pub fn judge(program: &str, args: &[String]) -> HeuristicVerdict {
    let judgement = judge_at(program, args, 0);
    let decision = match judgement.class {
        Class::ReadOnly => Decision::Allow,
        Class::Dangerous => Decision::Prompt,
        Class::Unlisted => DEFAULT_DECISION,
    };
    HeuristicVerdict {
        decision,
        reason: judgement.reason,
    }
}

fn basename(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

fn judge_at(program: &str, args: &[String], depth: usize) -> Judgement {
    let name = basename(program);
    let shown = display_command(name, args);
    if depth > MAX_DEPTH {
        return unlisted(&shown);
    }

    if let Some(judgement) = judge_wrapper(name, args, depth) {
        return judgement;
    }
    if SHELLS.contains(&name)
        && let Some(judgement) = judge_shell(name, args, depth)
    {
        return judgement;
    }
    if let Some(reason) = dangerous(name, args) {
        return Judgement::new(Class::Dangerous, format!("`{shown}` {reason}"));
    }
    if read_only(name, args) {
        return Judgement::new(
            Class::ReadOnly,
            format!("`{shown}` only reads (heuristics' read-only list)"),
        );
    }
    unlisted(&shown)
}

fn unlisted(shown: &str) -> Judgement {
    Judgement::new(
        Class::Unlisted,
        format!(
            "`{shown}` is on neither heuristics list: default {DEFAULT_DECISION} (it runs inside the sandbox)"
        ),
    )
}

/// Whether `arg` is `option`: equal, `--long=value`, or a short option inside a cluster
/// (`-rf` holds `-f`).
fn is_option(arg: &str, option: &str) -> bool {
    if arg == option {
        return true;
    }
    if let Some(long) = option.strip_prefix("--") {
        return arg
            .strip_prefix("--")
            .and_then(|rest| rest.strip_prefix(long))
            .is_some_and(|rest| rest.starts_with('='));
    }
    let mut option_chars = option.chars();
    if let (Some('-'), Some(letter), None) = (
        option_chars.next(),
        option_chars.next(),
        option_chars.next(),
    ) {
        return arg.len() > 2
            && arg.starts_with('-')
            && !arg.starts_with("--")
            && arg[1..].chars().all(|c| c.is_ascii_alphabetic())
            && arg[1..].contains(letter);
    }
    false
}

fn has_any_option(args: &[String], options: &[&str]) -> bool {
    // After `--` everything is an operand.
    args.iter()
        .take_while(|arg| arg.as_str() != "--")
        .any(|arg| options.iter().any(|option| is_option(arg, option)))
}

fn dangerous(name: &str, args: &[String]) -> Option<String> {
    for (program, reason) in DANGEROUS_PROGRAMS {
        let matches = if *program == "mkfs" {
            name.starts_with("mkfs")
        } else {
            name == *program
        };
        if matches {
            return Some((*reason).to_string());
        }
    }
    for (program, options, reason) in DANGEROUS_WITH {
        if name == *program && has_any_option(args, options) {
            return Some((*reason).to_string());
        }
    }
    if name == "dd" && args.iter().any(|arg| arg.starts_with("of=")) {
        return Some("writes straight to a file or device".to_string());
    }
    if DANGEROUS_RECURSIVE_ON_ROOT.contains(&name)
        && has_any_option(args, &["-R", "--recursive"])
        && args
            .iter()
            .any(|arg| arg.starts_with('/') && crate::rule::normalize_absolute(arg) == "/")
    {
        return Some("changes every file on the machine".to_string());
    }
    if name == "git" {
        let (subcommand, rest) = git_subcommand(args)?;
        for (dangerous_sub, options, reason) in GIT_DANGEROUS {
            if subcommand == *dangerous_sub && has_any_option(rest, options) {
                return Some((*reason).to_string());
            }
        }
        // `git push origin +main` forces like --force does.
        if subcommand == "push" && rest.iter().any(|arg| arg.starts_with('+')) {
            return Some("rewrites history on the remote (+refspec)".to_string());
        }
    }
    None
}

/// `git`'s subcommand and its arguments, skipping global options (`-C dir`, `-c k=v`,
/// `--git-dir=...`).
fn git_subcommand(args: &[String]) -> Option<(&str, &[String])> {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            "-C" | "-c" | "--git-dir" | "--work-tree" | "--namespace" => i += 2,
            a if a.starts_with('-') => i += 1,
            subcommand => return Some((subcommand, &args[i + 1..])),
        }
    }
    None
}

fn read_only(name: &str, args: &[String]) -> bool {
    if READ_ONLY.contains(&name) {
        return true;
    }
    if let Some((_, options)) = READ_ONLY_UNLESS
        .iter()
        .find(|(program, _)| *program == name)
    {
        return !has_any_option(args, options);
    }
    match name {
        "sed" => read_only_sed(args),
        "git" => read_only_git(args),
        _ => false,
    }
}

/// `sed -n Np` / `sed -n M,Np`, then file operands: prints lines, nothing else.
fn read_only_sed(args: &[String]) -> bool {
    let [n, script, files @ ..] = args else {
        return false;
    };
    let Some(range) = script.strip_suffix('p') else {
        return false;
    };
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let range_ok = match range.split_once(',') {
        Some((from, to)) => is_number(from) && is_number(to),
        None => is_number(range),
    };
    n == "-n" && range_ok && files.iter().all(|f| !f.starts_with('-'))
}

fn read_only_git(args: &[String]) -> bool {
    let Some((subcommand, rest)) = args.split_first() else {
        return false;
    };
    if GIT_READ_ONLY.contains(&subcommand.as_str()) {
        return !has_any_option(rest, GIT_READ_ONLY_EXCEPT);
    }
    if let Some((_, allowed)) = GIT_LISTING.iter().find(|(sub, _)| *sub == subcommand) {
        return rest.iter().all(|arg| allowed.contains(&arg.as_str()));
    }
    false
}

fn judge_wrapper(name: &str, args: &[String], depth: usize) -> Option<Judgement> {
    let (_, value_options, operands) = WRAPPERS.iter().find(|(wrapper, _, _)| *wrapper == name)?;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg == "--" {
            i += 1;
            break;
        }
        if name == "env" && !arg.starts_with('-') && arg.contains('=') {
            i += 1; // NAME=VALUE
            continue;
        }
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        i += if value_options.contains(&arg.as_str()) {
            2
        } else {
            1
        };
    }
    let command = args.get(i + operands..)?;
    let (inner, inner_args) = command.split_first()?;
    let judgement = judge_at(inner, inner_args, depth + 1);
    Some(Judgement::new(
        judgement.class,
        format!("{name}: {}", judgement.reason),
    ))
}

/// `bash -c SCRIPT` / `bash -lc SCRIPT`: every command of a plain script is judged and the
/// strictest wins. `None` when this is not a `-c` invocation or the script is not plain.
fn judge_shell(name: &str, args: &[String], depth: usize) -> Option<Judgement> {
    let mut has_c = false;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let Some(letters) = arg.strip_prefix('-') else {
            break;
        };
        if letters.is_empty() || !letters.chars().all(|c| "lceuxv".contains(c)) {
            return None;
        }
        has_c |= letters.contains('c');
        i += 1;
    }
    if !has_c {
        return None;
    }
    let script = args.get(i)?;
    let commands = shell_script::plain_commands(script)?;
    let judgements: Vec<(String, Judgement)> = commands
        .iter()
        .filter_map(|command| {
            let (program, rest) = command.split_first()?;
            Some((
                display_command(program, rest),
                judge_at(program, rest, depth + 1),
            ))
        })
        .collect();
    if let Some((_, dangerous)) = judgements.iter().find(|(_, j)| j.class == Class::Dangerous) {
        return Some(Judgement::new(
            Class::Dangerous,
            format!("{name} -c: {}", dangerous.reason),
        ));
    }
    if judgements.iter().all(|(_, j)| j.class == Class::ReadOnly) {
        return Some(Judgement::new(
            Class::ReadOnly,
            format!("{name} -c: every command only reads (heuristics' read-only list)"),
        ));
    }
    let unlisted: Vec<&str> = judgements
        .iter()
        .filter(|(_, j)| j.class == Class::Unlisted)
        .map(|(shown, _)| shown.as_str())
        .collect();
    Some(Judgement::new(
        Class::Unlisted,
        format!(
            "{name} -c: `{}` on neither heuristics list: default {DEFAULT_DECISION} (it runs inside the sandbox)",
            unlisted.join("`, `")
        ),
    ))
}

/// A short, shell-quoted rendering of a command for reasons.
fn display_command(name: &str, args: &[String]) -> String {
    const MAX: usize = 80;
    let words = std::iter::once(basename(name)).chain(args.iter().map(String::as_str));
    let mut shown = shlex::try_join(words).unwrap_or_else(|_| basename(name).to_string());
    if shown.len() > MAX {
        let mut cut = MAX;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(command: &str) -> Decision {
        let words = shlex::split(command).unwrap_or_default();
        let (program, args) = words
            .split_first()
            .unwrap_or_else(|| panic!("empty command"));
        judge(program, args).decision
    }

    #[test]
    fn read_only_commands_allow() {
        for command in [
            "cat README.md",
            "/usr/bin/ls -la /",
            "grep -rn foo src",
            "head -n 5 Cargo.toml",
            "wc -l a b",
            "find . -name '*.rs' -type f",
            "sed -n 5p file.txt",
            "sed -n 1,20p a b",
            "git status",
            "git log --oneline -5",
            "git diff HEAD~1",
            "git branch",
            "git branch --show-current",
            "rg -n TODO",
        ] {
            let verdict = {
                let words = shlex::split(command).unwrap_or_default();
                judge(&words[0], &words[1..])
            };
            assert_eq!(verdict.decision, Decision::Allow, "{command}");
            assert!(
                verdict.reason.contains("only reads"),
                "{command}: {}",
                verdict.reason
            );
        }
    }

    #[test]
    fn read_only_exceptions_fall_to_the_default() {
        for command in [
            "find . -name x -delete",
            "find . -exec rm {} ;",
            "find . -fprintf out %p",
            "sed -i s/a/b/ file",
            "sed -n 5p -i file",
            "git diff --output=x",
            "git branch newbranch",
            "git -c core.pager=sh log",
            "rg --pre ./script foo",
            "sort -uo out in",
        ] {
            let words = shlex::split(command).unwrap_or_default();
            let verdict = judge(&words[0], &words[1..]);
            assert_eq!(verdict.decision, DEFAULT_DECISION, "{command}");
            assert!(
                verdict.reason.contains("neither heuristics list"),
                "{command}: {}",
                verdict.reason
            );
        }
    }

    #[test]
    fn dangerous_commands_prompt() {
        for command in [
            "rm -f x",
            "rm -rf build",
            "rm -fr build",
            "rm --force x",
            "/bin/rm -Rf /",
            "sudo rm -rf /",
            "sudo -u root -- rm -f x",
            "env FOO=1 rm -f x",
            "timeout 5 rm -f x",
            "xargs -n 1 rm -f",
            "git reset --hard",
            "git -C repo reset --hard HEAD~1",
            "git push --force origin main",
            "git push -f",
            "git push origin +main",
            "git clean -fdx",
            "git branch -D topic",
            "dd if=/dev/zero of=/dev/sda bs=1M",
            "mkfs.ext4 /dev/sda1",
            "chmod -R 777 /",
            "chown --recursive nobody //",
            "bash -c 'ls && rm -rf ~/x'",
            "sh -lc 'cd /tmp; sudo rm -f x'",
            "bash -c \"bash -c 'rm -f x'\"",
        ] {
            assert_eq!(decide(command), Decision::Prompt, "{command}");
        }
    }

    #[test]
    fn not_dangerous_lookalikes() {
        for command in [
            "rm x",
            "rm -r build",
            "rm -- -f",
            "git reset --soft HEAD~1",
            "git push origin main",
            "dd if=/dev/zero count=1",
            "chmod -R 755 /tmp/x",
            "chmod 755 /",
            "sudo ls",
            "farm -rf",
        ] {
            assert_eq!(decide(command), Decision::Allow, "{command}");
        }
    }

    #[test]
    fn plain_shell_scripts_are_judged_command_by_command() {
        let args = |s: &[&str]| s.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let read_only = judge("bash", &args(&["-lc", "ls && git status | wc -l"]));
        assert_eq!(read_only.decision, Decision::Allow);
        assert_eq!(
            read_only.reason,
            "bash -c: every command only reads (heuristics' read-only list)"
        );

        let mixed = judge("/bin/bash", &args(&["-c", "cargo build; ls"]));
        assert_eq!(mixed.decision, Decision::Allow);
        assert!(
            mixed
                .reason
                .contains("`cargo build` on neither heuristics list"),
            "{}",
            mixed.reason
        );

        let dangerous = judge("zsh", &args(&["-c", "ls; git push --force"]));
        assert_eq!(dangerous.decision, Decision::Prompt);
        assert_eq!(
            dangerous.reason,
            "zsh -c: `git push --force` rewrites or deletes history on the remote"
        );

        // Not plain: left to the default, whatever it contains.
        let not_plain = judge("bash", &args(&["-c", "rm -rf $HOME"]));
        assert_eq!(not_plain.decision, DEFAULT_DECISION);
        assert!(
            not_plain
                .reason
                .starts_with("`bash -c 'rm -rf $HOME'` is on neither"),
            "{}",
            not_plain.reason
        );
    }

    #[test]
    fn deep_nesting_stops_at_the_default() {
        let mut script = "rm -f x".to_string();
        for _ in 0..20 {
            script = format!("sudo {script}");
        }
        let words = shlex::split(&script).unwrap_or_default();
        assert_eq!(judge(&words[0], &words[1..]).decision, DEFAULT_DECISION);
    }

    #[test]
    fn option_matching() {
        assert!(is_option("-rf", "-f"));
        assert!(is_option("--force", "--force"));
        assert!(is_option("--output=x", "--output"));
        assert!(!is_option("--outputx", "--output"));
        assert!(!is_option("--fast", "-f"));
        assert!(!is_option("-f1", "-1"));
        assert!(is_option("-delete", "-delete"));
        assert!(!is_option("-deleted", "-delete"));
    }
}
