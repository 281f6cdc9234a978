//! Prefix rules and the index that finds the ones matching a command.
//!
//! Matching follows Codex's execpolicy: a rule's pattern must equal a prefix of the
//! command, token by token (an alternatives element matches any one of its strings). Rules
//! are first looked up by the command's first token exactly; only when none matches and
//! the program is an absolute path are the rules for its basename tried, and then only if
//! no `host_executable()` for that name excludes the path.
//!
//! At run time ([`RuleSet::matches_exec`]) deny matches broadly on top of that: every
//! `forbidden` and `prompt` rule whose program token has the program's basename matches
//! too, whatever the exact-path rules and `host_executable()` say (a second index, keyed
//! by basename, holds only those rules).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::decision::Decision;

/// One element of a pattern: a token, or a list of alternatives for one position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatternToken {
    Single(String),
    Alts(Vec<String>),
}

impl PatternToken {
    #[cfg(test)]
    fn matches(&self, token: &str) -> bool {
        match self {
            PatternToken::Single(expected) => expected == token,
            PatternToken::Alts(alts) => alts.iter().any(|alt| alt == token),
        }
    }

    pub(crate) fn alternatives(&self) -> &[String] {
        match self {
            PatternToken::Single(single) => std::slice::from_ref(single),
            PatternToken::Alts(alts) => alts,
        }
    }
}

/// Which layer of rules a rule belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// The user's rules files (`--rules`, the default directories).
    #[default]
    User,
    /// Admin rules (`--admin-rules`): prompt and forbidden only, matched on their own so no
    /// user rule can shadow or weaken them; the strictest decision across layers wins.
    Admin,
}

impl Layer {
    fn is_user(&self) -> bool {
        *self == Layer::User
    }
}

/// Where a rule was written: the `prefix_rule(...)` call, or the `requirements.toml` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleOrigin {
    /// The rules file.
    pub file: PathBuf,
    /// The line of the call, starting at 1.
    pub line: u32,
    /// The layer; serialized only for admin rules (`"layer": "admin"`).
    #[serde(skip_serializing_if = "Layer::is_user")]
    pub layer: Layer,
}

impl std::fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if self.layer == Layer::Admin {
            f.write_str(", admin rules")?;
        }
        Ok(())
    }
}

/// One prefix rule, after first-token alternatives were expanded: `program` is a single
/// token (a bare name or an absolute path).
#[derive(Debug, Clone)]
pub(crate) struct PrefixRule {
    pub program: String,
    pub rest: Vec<PatternToken>,
    pub decision: Decision,
    pub justification: Option<String>,
    pub origin: Option<RuleOrigin>,
    /// The whole pattern as written in the call (first-token alternatives folded back),
    /// rendered as Starlark: shared by the rules one call expanded into.
    pub written: Arc<str>,
}

/// A match found in the index: which rule, how many command tokens it covered, and the
/// absolute program path when it matched through the basename fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexMatch {
    pub rule: usize,
    pub prefix_len: usize,
    pub resolved_program: Option<PathBuf>,
}

/// The rules of a policy, indexed for evaluation: a map from first token to a trie over
/// the remaining pattern tokens. An alternatives element stays one edge (no cartesian
/// expansion, so the index is as large as the rules) and each of its strings points at
/// that edge. Looking a command up costs a few hash lookups per command token, whatever
/// the number of rules.
#[derive(Debug, Default, Clone)]
pub(crate) struct RuleSet {
    pub rules: Vec<PrefixRule>,
    roots: HashMap<String, Node>,
    /// The `forbidden` and `prompt` rules again, keyed by the basename of their program
    /// token (`git` for both `git` and `/usr/bin/git`): deny matches broadly at run time.
    deny_roots: HashMap<String, DenyRoot>,
    /// `host_executable(name, paths)`: basename -> the only absolute paths that may match
    /// basename rules. Paths are normalised lexically.
    pub host_executables: HashMap<String, Vec<PathBuf>>,
}

/// The deny rules for one basename.
#[derive(Debug, Default, Clone)]
struct DenyRoot {
    node: Node,
    /// Every rule here has the bare basename as its token (no path rule): a walk of
    /// `roots[basename]` with the same arguments has already found them all.
    only_bare: bool,
}

#[derive(Debug, Default, Clone)]
struct Node {
    /// Rules whose pattern ends here (indices into `RuleSet::rules`).
    ends: Vec<usize>,
    singles: HashMap<String, Node>,
    alternatives: Vec<(Vec<String>, Node)>,
    /// Each string of each alternatives edge -> the edges (indices into `alternatives`)
    /// that accept it.
    alternative_index: HashMap<String, Vec<usize>>,
}

impl RuleSet {
    pub fn new(rules: Vec<PrefixRule>, host_executables: HashMap<String, Vec<PathBuf>>) -> Self {
        let mut set = RuleSet {
            rules: Vec::with_capacity(rules.len()),
            roots: HashMap::new(),
            deny_roots: HashMap::new(),
            host_executables,
        };
        for rule in rules {
            set.push(rule);
        }
        set
    }

    fn push(&mut self, rule: PrefixRule) {
        let index = self.rules.len();
        insert(&mut self.roots, &rule.program, &rule.rest, index);
        if rule.decision != Decision::Allow
            && let Some(basename) = basename(&rule.program)
        {
            let root = self
                .deny_roots
                .entry(basename.to_string())
                .or_insert_with(|| DenyRoot {
                    only_bare: true,
                    ..DenyRoot::default()
                });
            root.only_bare &= basename == rule.program;
            insert_under(&mut root.node, &rule.rest, index);
        }
        self.rules.push(rule);
    }

    /// All rules matching `[program, args...]`, in the order the rules were written
    /// (exact token first, normalised lexically, then the basename fallback).
    #[cfg(test)]
    pub fn matches(&self, program: &str, args: &[String]) -> Vec<IndexMatch> {
        let normalized;
        let program = if program.starts_with('/') {
            normalized = normalize_absolute(program);
            normalized.as_str()
        } else {
            program
        };
        self.matches_normalized(program, args).0
    }

    /// All rules matching `[program, args...]` as `codex execpolicy check` matches them:
    /// the rules whose program token is `program`, byte for byte. Only when none matches
    /// and `resolve` is set (`--resolve-host-executables`) is a `program` holding a `/`
    /// resolved (against `cwd` when relative, then normalised lexically: `//`, `.`, `..`,
    /// a trailing `/`) and the rules for its basename tried, unless a `host_executable()`
    /// for that name excludes the resolved path. Without `cwd` a relative path is not
    /// resolved.
    pub fn matches_codex(
        &self,
        program: &str,
        args: &[String],
        resolve: bool,
        cwd: Option<&Path>,
    ) -> Vec<IndexMatch> {
        let exact = self.matches_from_root(program, args, None);
        if !exact.is_empty() || !resolve || !program.contains('/') {
            return exact;
        }
        let absolute = if program.starts_with('/') {
            program.to_string()
        } else {
            let Some(cwd) = cwd.and_then(Path::to_str) else {
                return Vec::new();
            };
            format!("{cwd}/{program}")
        };
        let resolved = normalize_lexically(&absolute);
        let Some(name) = basename(&resolved) else {
            return Vec::new();
        };
        if let Some(paths) = self.host_executables.get(name)
            && !paths.iter().any(|p| p.as_os_str() == resolved.as_str())
        {
            return Vec::new();
        }
        let resolved_program = Some(PathBuf::from(&resolved));
        self.matches_from_root(name, args, resolved_program)
    }

    /// [`RuleSet::matches`], plus every `forbidden` and `prompt` rule whose program token
    /// has `program`'s basename (deny matches broadly), in rule order, each rule once. A
    /// rule found only through the basename records `program` as its resolved program.
    pub fn matches_exec(&self, program: &str, args: &[String]) -> Vec<IndexMatch> {
        let normalized;
        let program = if program.starts_with('/') {
            normalized = normalize_absolute(program);
            normalized.as_str()
        } else {
            program
        };
        let (mut found, walked_basename) = self.matches_normalized(program, args);
        let Some(root) = basename(program).and_then(|name| self.deny_roots.get(name)) else {
            return found;
        };
        if root.only_bare && walked_basename {
            return found;
        }
        let before = found.len();
        for (rule, depth) in walk(&root.node, args) {
            if !found[..before].iter().any(|m| m.rule == rule) {
                found.push(IndexMatch {
                    rule,
                    prefix_len: depth + 1,
                    resolved_program: Some(PathBuf::from(program)),
                });
            }
        }
        if found.len() > before {
            found.sort_unstable_by_key(|m| m.rule);
        }
        found
    }

    /// Codex's matching of a normalised program; also says whether the rules of the
    /// program's basename (`roots[basename]`) were walked.
    fn matches_normalized(&self, program: &str, args: &[String]) -> (Vec<IndexMatch>, bool) {
        let exact = self.matches_from_root(program, args, None);
        let program_is_basename = !program.contains('/');
        if !exact.is_empty() || !program.starts_with('/') {
            return (exact, program_is_basename);
        }

        let Some(basename) = basename(program) else {
            return (Vec::new(), false);
        };
        if let Some(paths) = self.host_executables.get(basename)
            && !paths.iter().any(|p| p.as_os_str() == program)
        {
            return (Vec::new(), false);
        }
        let found = self.matches_from_root(basename, args, Some(PathBuf::from(program)));
        (found, true)
    }

    fn matches_from_root(
        &self,
        first: &str,
        args: &[String],
        resolved_program: Option<PathBuf>,
    ) -> Vec<IndexMatch> {
        let Some(root) = self.roots.get(first) else {
            return Vec::new();
        };
        walk(root, args)
            .into_iter()
            .map(|(rule, depth)| IndexMatch {
                rule,
                prefix_len: depth + 1,
                resolved_program: resolved_program.clone(),
            })
            .collect()
    }
}

/// The last path component of a program token or path (`git` for `/usr/bin/git` and for
/// `git`); `None` when it is empty, `.` or `..` (`/`, `/usr/bin/`). A string split, not
/// `Path::file_name`: this runs on every exec.
pub(crate) fn basename(program: &str) -> Option<&str> {
    let name = program.rsplit('/').next().unwrap_or(program);
    (!name.is_empty() && name != "." && name != "..").then_some(name)
}

/// Adds the trie path for `rest` under `roots[first]`; the rule `index` ends there.
fn insert(roots: &mut HashMap<String, Node>, first: &str, rest: &[PatternToken], index: usize) {
    insert_under(roots.entry(first.to_string()).or_default(), rest, index);
}

/// Adds the trie path for `rest` under `node`; the rule `index` ends there.
fn insert_under(mut node: &mut Node, rest: &[PatternToken], index: usize) {
    for token in rest {
        node = match token {
            PatternToken::Single(single) => node.singles.entry(single.clone()).or_default(),
            PatternToken::Alts(alts) => {
                let position = node.alternatives.iter().position(|(a, _)| a == alts);
                let position = position.unwrap_or_else(|| {
                    let position = node.alternatives.len();
                    node.alternatives.push((alts.clone(), Node::default()));
                    for alt in alts {
                        let edges = node.alternative_index.entry(alt.clone()).or_default();
                        if !edges.contains(&position) {
                            edges.push(position);
                        }
                    }
                    position
                });
                &mut node.alternatives[position].1
            }
        };
    }
    node.ends.push(index);
}

/// Every rule under `root` whose pattern covers a prefix of `args`: (rule index, how many
/// of `args` it covered), sorted by rule index.
fn walk(root: &Node, args: &[String]) -> Vec<(usize, usize)> {
    let mut found: Vec<(usize, usize)> = Vec::new();
    // Iterative walk: a pattern can be as long as a rules file makes it.
    let mut stack: Vec<(&Node, usize)> = vec![(root, 0)];
    while let Some((node, depth)) = stack.pop() {
        found.extend(node.ends.iter().map(|&rule| (rule, depth)));
        let Some(token) = args.get(depth) else {
            continue;
        };
        if let Some(child) = node.singles.get(token.as_str()) {
            stack.push((child, depth + 1));
        }
        for &edge in node
            .alternative_index
            .get(token.as_str())
            .into_iter()
            .flatten()
        {
            stack.push((&node.alternatives[edge].1, depth + 1));
        }
    }
    found.sort_unstable();
    found
}

impl PrefixRule {
    /// Whether this rule alone matches `[first, args...]` exactly (no basename fallback).
    #[cfg(test)]
    pub fn matches_exactly(&self, first: &str, args: &[String]) -> bool {
        first == self.program
            && args.len() >= self.rest.len()
            && self.rest.iter().zip(args).all(|(p, a)| p.matches(a))
    }

    /// The pattern as it would be written in Starlark, for error messages.
    pub fn render_pattern(&self) -> String {
        render_pattern(
            std::iter::once(&PatternToken::Single(self.program.clone())).chain(&self.rest),
        )
    }
}

pub(crate) fn render_pattern<'a>(tokens: impl IntoIterator<Item = &'a PatternToken>) -> String {
    let parts: Vec<String> = tokens
        .into_iter()
        .map(|token| match token {
            PatternToken::Single(s) => format!("{s:?}"),
            PatternToken::Alts(alts) => {
                let alts: Vec<String> = alts.iter().map(|a| format!("{a:?}")).collect();
                format!("[{}]", alts.join(", "))
            }
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Lexical normalisation of an absolute path: `//`, `.` and `..` are resolved without
/// touching the filesystem (the policy does no I/O at evaluation time).
pub(crate) fn normalize_absolute(path: &str) -> String {
    if !path.contains("//")
        && !path.contains("/./")
        && !path.contains("/..")
        && !path.ends_with("/.")
    {
        return path.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// `path` (absolute) with empty and `.` components dropped and `..` applied, without a
/// trailing `/`: `/usr//bin/../bin/git/` is `/usr/bin/git`; `/` stays `/`.
pub(crate) fn normalize_lexically(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(program: &str, rest: &[PatternToken], decision: Decision) -> PrefixRule {
        PrefixRule {
            program: program.to_string(),
            rest: rest.to_vec(),
            decision,
            justification: None,
            origin: None,
            written: Arc::from(""),
        }
    }

    fn s(token: &str) -> PatternToken {
        PatternToken::Single(token.to_string())
    }

    fn alts(tokens: &[&str]) -> PatternToken {
        PatternToken::Alts(tokens.iter().map(|t| t.to_string()).collect())
    }

    fn args(tokens: &[&str]) -> Vec<String> {
        tokens.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn trie_reports_every_matching_prefix_in_rule_order() {
        let set = RuleSet::new(
            vec![
                rule("git", &[s("push")], Decision::Prompt),
                rule("git", &[], Decision::Allow),
                rule(
                    "git",
                    &[alts(&["push", "fetch"]), s("--force")],
                    Decision::Forbidden,
                ),
                rule("git", &[s("status")], Decision::Allow),
            ],
            HashMap::new(),
        );
        let found = set.matches("git", &args(&["push", "--force", "origin"]));
        let got: Vec<(usize, usize)> = found.iter().map(|m| (m.rule, m.prefix_len)).collect();
        assert_eq!(got, vec![(0, 2), (1, 1), (2, 3)]);
        assert!(set.matches("gitk", &args(&["push"])).is_empty());
    }

    #[test]
    fn trie_agrees_with_direct_matching() {
        let rules = vec![
            rule(
                "a",
                &[alts(&["x", "y"]), alts(&["x", "y"])],
                Decision::Allow,
            ),
            rule("a", &[alts(&["y", "x"]), s("x")], Decision::Prompt),
            rule("a", &[s("x"), alts(&["x", "z"])], Decision::Forbidden),
            rule("a", &[], Decision::Allow),
            rule("a", &[alts(&["z", "z"])], Decision::Allow),
        ];
        let set = RuleSet::new(rules.clone(), HashMap::new());
        let words = ["x", "y", "z"];
        for a in words {
            for b in words {
                let cmd = args(&[a, b]);
                let want: Vec<usize> = (0..rules.len())
                    .filter(|&i| rules[i].matches_exactly("a", &cmd))
                    .collect();
                let got: Vec<usize> = set.matches("a", &cmd).iter().map(|m| m.rule).collect();
                assert_eq!(got, want, "command a {a} {b}");
            }
        }
    }

    #[test]
    fn absolute_rules_match_only_their_path_and_basename_rules_fall_back() {
        let set = RuleSet::new(
            vec![
                rule("/usr/bin/git", &[s("push")], Decision::Forbidden),
                rule("git", &[s("push")], Decision::Prompt),
            ],
            HashMap::new(),
        );
        // Exact path first: the basename rule is not consulted.
        let exact = set.matches("/usr/bin/git", &args(&["push"]));
        assert_eq!(exact.len(), 1);
        assert_eq!(exact[0].rule, 0);
        assert_eq!(exact[0].resolved_program, None);
        // Another git: basename fallback, with the path recorded.
        let other = set.matches("/opt/git/bin/git", &args(&["push"]));
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].rule, 1);
        assert_eq!(
            other[0].resolved_program,
            Some(PathBuf::from("/opt/git/bin/git"))
        );
        // A bare name never matches an absolute-path rule.
        let bare = set.matches("git", &args(&["push"]));
        assert_eq!(bare.iter().map(|m| m.rule).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn host_executable_restricts_the_basename_fallback() {
        let mut hosts = HashMap::new();
        hosts.insert("git".to_string(), vec![PathBuf::from("/usr/bin/git")]);
        let set = RuleSet::new(vec![rule("git", &[], Decision::Prompt)], hosts);
        assert_eq!(set.matches("/usr/bin/git", &[]).len(), 1);
        assert_eq!(set.matches("/usr/bin/../bin//git", &[]).len(), 1);
        assert!(set.matches("/tmp/git", &[]).is_empty());
        assert_eq!(set.matches("git", &[]).len(), 1);
    }

    #[test]
    fn matches_exec_is_codex_matching_plus_every_deny_rule_of_the_basename() {
        let rules = vec![
            rule("git", &[s("push")], Decision::Forbidden),
            rule("/usr/bin/git", &[], Decision::Allow),
            rule("git", &[s("status")], Decision::Allow),
            rule("/opt/bin/git", &[s("push")], Decision::Prompt),
            rule("ls", &[], Decision::Allow),
            rule("rm", &[], Decision::Prompt),
            rule("/bin/rm", &[s("-rf")], Decision::Forbidden),
        ];
        for pinned in [false, true] {
            let mut hosts = HashMap::new();
            if pinned {
                hosts.insert("git".to_string(), vec![PathBuf::from("/usr/bin/git")]);
                hosts.insert("rm".to_string(), vec![PathBuf::from("/bin/rm")]);
            }
            let set = RuleSet::new(rules.clone(), hosts);
            for program in [
                "git",
                "/usr/bin/git",
                "/tmp/git",
                "/opt/bin/git",
                "./git",
                "ls",
                "/tmp/ls",
                "rm",
                "/bin/rm",
                "/usr/bin/rm",
                "/tmp/x/../rm",
            ] {
                for command in [&["push"][..], &["status"], &["-rf", "/"], &[]] {
                    let cmd = args(command);
                    let name = Path::new(program).file_name().unwrap().to_str().unwrap();
                    let mut want: Vec<usize> =
                        set.matches(program, &cmd).iter().map(|m| m.rule).collect();
                    for (i, r) in rules.iter().enumerate() {
                        let basename_matches =
                            Path::new(&r.program).file_name().is_some_and(|n| n == name);
                        if r.decision != Decision::Allow
                            && basename_matches
                            && r.matches_exactly(&r.program, &cmd)
                            && !want.contains(&i)
                        {
                            want.push(i);
                        }
                    }
                    want.sort_unstable();
                    let got: Vec<usize> = set
                        .matches_exec(program, &cmd)
                        .iter()
                        .map(|m| m.rule)
                        .collect();
                    assert_eq!(got, want, "pinned={pinned} {program} {command:?}");
                }
            }
        }
    }

    #[test]
    fn normalizes_without_the_filesystem() {
        assert_eq!(normalize_absolute("/usr/bin/git"), "/usr/bin/git");
        assert_eq!(normalize_absolute("/usr//bin/./git"), "/usr/bin/git");
        assert_eq!(normalize_absolute("/usr/lib/../bin/git"), "/usr/bin/git");
        assert_eq!(normalize_absolute("/../../git"), "/git");
    }

    #[test]
    fn renders_patterns_as_starlark() {
        let r = rule(
            "git",
            &[alts(&["push", "fetch"]), s("-f")],
            Decision::Prompt,
        );
        assert_eq!(r.render_pattern(), r#"["git", ["push", "fetch"], "-f"]"#);
    }
}
