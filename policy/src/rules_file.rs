//! The rules-file language: Starlark (the `starlark` crate, the dialect Codex uses) with
//! Codex's builtins `prefix_rule`, `host_executable` and `network_rule`.
//!
//! Owns turning one file's text into rules and checking its `match`/`not_match` examples.
//! It must never let a file half-load: any error aborts the whole load.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use starlark::codemap::FileSpan;
use starlark::environment::{GlobalsBuilder, Module};
use starlark::eval::Evaluator;
use starlark::starlark_module;
use starlark::syntax::{AstModule, Dialect};
use starlark::values::Value;
use starlark::values::list::{ListRef, UnpackList};
use starlark::values::none::NoneType;

use crate::decision::Decision;
use crate::error::{LoadError, SourceLocation};
use crate::rule::{Layer, PatternToken, PrefixRule, RuleOrigin, RuleSet, normalize_lexically};

/// What the files loaded so far declared, in order.
#[derive(Debug, Default)]
pub(crate) struct RulesBuilder {
    pub rules: Vec<PrefixRule>,
    pub host_executables: HashMap<String, Vec<PathBuf>>,
    pub network_rules: Vec<crate::network::NetworkRule>,
    /// For `~/...` in `host_executable` paths.
    home: Option<PathBuf>,
    pending: Vec<PendingExamples>,
    /// The layer the rules go to: an admin layer refuses `allow`.
    pub layer: Layer,
}

/// The examples of one `prefix_rule` call, checked once its file has been evaluated (so a
/// `host_executable` later in the file counts, as in Codex).
#[derive(Debug)]
struct PendingExamples {
    rules: Vec<PrefixRule>,
    matches: Vec<Vec<String>>,
    not_matches: Vec<Vec<String>>,
    location: SourceLocation,
}

/// An error raised by a builtin; the interpreter attaches the call's location.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BuiltinError(String);

fn fail(message: impl Into<String>) -> starlark::Error {
    starlark::Error::new_other(BuiltinError(message.into()))
}

impl RulesBuilder {
    pub fn new(home: Option<PathBuf>) -> Self {
        RulesBuilder {
            home,
            ..RulesBuilder::default()
        }
    }
}

thread_local! {
    /// The builder of the file being evaluated on this thread. The builtins reach it here
    /// rather than through `Evaluator::extra`, whose `ProvidesStaticType` derive expands to
    /// an `unsafe impl` (this crate forbids `unsafe`).
    static BUILDER: RefCell<Option<RulesBuilder>> = const { RefCell::new(None) };
}

fn with_builder<R>(f: impl FnOnce(&mut RulesBuilder) -> R) -> starlark::Result<R> {
    BUILDER.with(|slot| match slot.borrow_mut().as_mut() {
        Some(builder) => Ok(f(builder)),
        None => Err(fail(
            "internal error: rules builtins called outside a rules file",
        )),
    })
}

/// Evaluates one rules file into `builder`, then checks the examples it declared.
pub(crate) fn parse_file(
    builder: &mut RulesBuilder,
    file: &Path,
    source: &str,
) -> Result<(), LoadError> {
    let pending_before = builder.pending.len();
    let name = file.to_string_lossy();
    let mut dialect = Dialect::Extended.clone();
    dialect.enable_f_strings = true;
    let ast = AstModule::parse(&name, source.to_string(), &dialect)
        .map_err(|e| parse_error(file, source, &e))?;
    let globals = GlobalsBuilder::standard().with(rules_builtins).build();
    let module = Module::new();

    BUILDER.with(|slot| *slot.borrow_mut() = Some(std::mem::take(builder)));
    let evaluated = {
        let mut eval = Evaluator::new(&module);
        eval.eval_module(ast, &globals).map(|_| ())
    };
    *builder = BUILDER
        .with(|slot| slot.borrow_mut().take())
        .unwrap_or_default();
    evaluated.map_err(|e| starlark_error(file, &e))?;

    for pending in &builder.pending[pending_before..] {
        check_examples(pending, &builder.host_executables)?;
    }
    Ok(())
}

/// A parse error, located as Codex locates it: an error at the very end of a file that
/// ends with a newline (a call or bracket still open) is reported at 1:1, where Codex's
/// `--> file:1:1` puts it, with a note saying where it really is.
fn parse_error(file: &Path, source: &str, error: &starlark::Error) -> LoadError {
    let mut err = starlark_error(file, error);
    if let LoadError::Invalid { location, message } = &mut err
        && let Some(span) = error.span()
        && usize::try_from(span.span.begin().get()).is_ok_and(|at| at >= source.len())
        && source.ends_with('\n')
    {
        location.line = 1;
        location.column = 1;
        message.push_str(" (at the end of the file: a call or bracket is still open)");
    }
    err
}

fn starlark_error(file: &Path, error: &starlark::Error) -> LoadError {
    let message = error.without_diagnostic().to_string();
    // One line: the interpreter's messages sometimes carry a trailing newline or a
    // multi-line hint; the first line says what was expected.
    let message = shorten_expected(message.trim().lines().next().unwrap_or_default().trim());
    match error.span() {
        Some(span) => LoadError::Invalid {
            location: location_of(file, span),
            message,
        },
        None => LoadError::InvalidUnlocated {
            file: file.to_path_buf(),
            message,
        },
    }
}

/// The parser lists every token it could have accepted (often 40 and more). Keep the ones
/// a person most likely forgot, and say how many others there were.
fn shorten_expected(message: &str) -> String {
    const MARK: &str = ", expected one of ";
    const LIKELY: &[&str] = &["\",\"", "\")\"", "\"]\"", "\"}\"", "\":\"", "\"=\""];
    let Some((head, list)) = message.split_once(MARK) else {
        return message.to_string();
    };
    let tokens: Vec<&str> = list
        .split(", ")
        .flat_map(|part| part.split(" or "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .collect();
    if tokens.len() <= 6 {
        return message.to_string();
    }
    let likely: Vec<&str> = LIKELY
        .iter()
        .copied()
        .filter(|token| tokens.contains(token))
        .take(2)
        .collect();
    if likely.is_empty() {
        return format!("{head}, expected one of {} tokens", tokens.len());
    }
    format!(
        "{head}, expected {} (or one of {} other tokens)",
        likely.join(" or "),
        tokens.len() - likely.len()
    )
}

fn location_of(file: &Path, span: &FileSpan) -> SourceLocation {
    let begin = span.resolve_span().begin;
    SourceLocation {
        file: file.to_path_buf(),
        line: to_u32(begin.line) + 1,
        column: to_u32(begin.column) + 1,
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn check_examples(
    pending: &PendingExamples,
    host_executables: &HashMap<String, Vec<PathBuf>>,
) -> Result<(), LoadError> {
    let set = RuleSet::new(pending.rules.clone(), host_executables.clone());
    // Codex resolves an example's program against the working directory (`./git status`
    // is an example of `git status`).
    let cwd = std::env::current_dir().ok();
    let matches = |program: &str, args: &[String]| {
        !set.matches_codex(program, args, true, cwd.as_deref())
            .is_empty()
    };
    let pattern = pending
        .rules
        .first()
        .map(|rule| {
            // Show the pattern as written: first-token alternatives folded back together.
            if pending.rules.len() == 1 {
                rule.render_pattern()
            } else {
                let first =
                    PatternToken::Alts(pending.rules.iter().map(|r| r.program.clone()).collect());
                crate::rule::render_pattern(std::iter::once(&first).chain(&rule.rest))
            }
        })
        .unwrap_or_default();
    for example in &pending.not_matches {
        if let Some((program, args)) = example.split_first()
            && matches(program, args)
        {
            return Err(LoadError::ExampleDidMatch {
                location: pending.location.clone(),
                example: render_example(example),
                pattern,
            });
        }
    }
    for example in &pending.matches {
        if let Some((program, args)) = example.split_first()
            && !matches(program, args)
        {
            return Err(LoadError::ExampleDidNotMatch {
                location: pending.location.clone(),
                example: render_example(example),
                pattern,
            });
        }
    }
    Ok(())
}

fn render_example(example: &[String]) -> String {
    shlex::try_join(example.iter().map(String::as_str)).unwrap_or_else(|_| example.join(" "))
}

fn parse_decision(raw: &str) -> starlark::Result<Decision> {
    match raw {
        "allow" => Ok(Decision::Allow),
        "prompt" => Ok(Decision::Prompt),
        "forbidden" => Ok(Decision::Forbidden),
        other => Err(fail(format!(
            "invalid decision {other:?}: expected \"allow\", \"prompt\" or \"forbidden\""
        ))),
    }
}

fn parse_justification(raw: Option<&str>) -> starlark::Result<Option<String>> {
    match raw {
        Some(text) if text.trim().is_empty() => Err(fail(
            "justification cannot be empty: give a reason, or leave `justification` out",
        )),
        Some(text) => Ok(Some(text.to_string())),
        None => Ok(None),
    }
}

fn parse_pattern(pattern: UnpackList<Value<'_>>) -> starlark::Result<Vec<PatternToken>> {
    let mut tokens = Vec::with_capacity(pattern.items.len());
    for value in pattern.items {
        tokens.push(parse_pattern_token(value)?);
    }
    if tokens.is_empty() {
        return Err(fail(
            "pattern cannot be empty: expected at least the program name",
        ));
    }
    Ok(tokens)
}

fn parse_pattern_token(value: Value<'_>) -> starlark::Result<PatternToken> {
    if let Some(s) = value.unpack_str() {
        return Ok(PatternToken::Single(s.to_string()));
    }
    let Some(list) = ListRef::from_value(value) else {
        return Err(fail(format!(
            "pattern element must be a string or a list of strings, not {}",
            value.get_type()
        )));
    };
    let mut alts = Vec::with_capacity(list.len());
    for item in list.content() {
        let Some(s) = item.unpack_str() else {
            return Err(fail(format!(
                "pattern alternative must be a string, not {}",
                item.get_type()
            )));
        };
        alts.push(s.to_string());
    }
    match alts.len() {
        0 => Err(fail("pattern alternatives cannot be an empty list")),
        1 => Ok(PatternToken::Single(alts.swap_remove(0))),
        _ => Ok(PatternToken::Alts(alts)),
    }
}

fn parse_examples(examples: Option<UnpackList<Value<'_>>>) -> starlark::Result<Vec<Vec<String>>> {
    let Some(examples) = examples else {
        return Ok(Vec::new());
    };
    examples.items.into_iter().map(parse_example).collect()
}

/// An example is a list of tokens or a string split like a shell would (`shlex`).
fn parse_example(value: Value<'_>) -> starlark::Result<Vec<String>> {
    let tokens = if let Some(raw) = value.unpack_str() {
        shlex::split(raw).ok_or_else(|| {
            fail(format!(
                "example {raw:?} is not valid shell syntax (unbalanced quotes?)"
            ))
        })?
    } else if let Some(list) = ListRef::from_value(value) {
        let mut tokens = Vec::with_capacity(list.len());
        for item in list.content() {
            let Some(s) = item.unpack_str() else {
                return Err(fail(format!(
                    "example tokens must be strings, not {}",
                    item.get_type()
                )));
            };
            tokens.push(s.to_string());
        }
        tokens
    } else {
        return Err(fail(format!(
            "example must be a string or a list of strings, not {}",
            value.get_type()
        )));
    };
    if tokens.is_empty() {
        return Err(fail("example cannot be empty"));
    }
    Ok(tokens)
}

fn parse_host_path(raw: &str, home: Option<&Path>) -> starlark::Result<PathBuf> {
    let path = if let Some(rest) = raw.strip_prefix("~/") {
        let Some(home) = home else {
            return Err(fail(format!(
                "host_executable path {raw:?} uses `~/` but no home directory is known (HOME unset)"
            )));
        };
        home.join(rest)
    } else {
        PathBuf::from(raw)
    };
    match path.to_str() {
        // A trailing `/` is dropped, as Codex does (`/usr/bin/git/` is `/usr/bin/git`).
        Some(s) if s.starts_with('/') => Ok(PathBuf::from(normalize_lexically(s))),
        _ => Err(fail(format!(
            "host_executable paths must be absolute or start with `~/` (got {raw:?})"
        ))),
    }
}

/// Checks a `network_rule` host as Codex does (see [`crate::network::parse_host`]).
pub(crate) fn validate_network_host(raw: &str) -> Result<(String, Option<u16>), &'static str> {
    crate::network::parse_host(raw, false)
}

#[starlark_module]
fn rules_builtins(builder: &mut GlobalsBuilder) {
    /// `prefix_rule(pattern, decision="allow", match=[], not_match=[], justification=None)`
    fn prefix_rule<'v>(
        pattern: UnpackList<Value<'v>>,
        decision: Option<&'v str>,
        r#match: Option<UnpackList<Value<'v>>>,
        not_match: Option<UnpackList<Value<'v>>>,
        justification: Option<&'v str>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<NoneType> {
        let decision = decision.map_or(Ok(Decision::Allow), parse_decision)?;
        let justification = parse_justification(justification)?;
        let tokens = parse_pattern(pattern)?;
        let matches = parse_examples(r#match)?;
        let not_matches = parse_examples(not_match)?;
        let location = eval.call_stack_top_location();

        let (first, rest) = tokens
            .split_first()
            .ok_or_else(|| fail("pattern cannot be empty"))?;
        let location = location.map_or_else(
            || SourceLocation {
                file: PathBuf::new(),
                line: 0,
                column: 0,
            },
            |span| location_of(Path::new(span.filename()), &span),
        );
        let layer = with_builder(|builder| builder.layer)?;
        if layer == Layer::Admin && decision == Decision::Allow {
            return Err(fail(
                "admin rules may only prompt or forbid (decision = \"prompt\" or \"forbidden\"); allow rules belong in the user's rules files",
            ));
        }
        let origin = RuleOrigin {
            file: location.file.clone(),
            line: location.line,
            layer,
        };
        let written: std::sync::Arc<str> = crate::rule::render_pattern(&tokens).into();
        // First-token alternatives become separate rules, each indexed by its program.
        let rules: Vec<PrefixRule> = first
            .alternatives()
            .iter()
            .map(|program| PrefixRule {
                program: program.clone(),
                rest: rest.to_vec(),
                decision,
                justification: justification.clone(),
                origin: Some(origin.clone()),
                written: written.clone(),
            })
            .collect();

        with_builder(|builder| {
            builder.rules.extend(rules.iter().cloned());
            if !matches.is_empty() || !not_matches.is_empty() {
                builder.pending.push(PendingExamples {
                    rules,
                    matches,
                    not_matches,
                    location,
                });
            }
        })?;
        Ok(NoneType)
    }

    /// `host_executable(name, paths)`: basename rules for `name` match only these paths.
    fn host_executable<'v>(
        name: &'v str,
        paths: UnpackList<Value<'v>>,
    ) -> starlark::Result<NoneType> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(fail(format!(
                "host_executable name must be a bare executable name (got {name:?})"
            )));
        }
        let home = with_builder(|builder| builder.home.clone())?;
        let mut parsed: Vec<PathBuf> = Vec::new();
        for value in paths.items {
            let Some(raw) = value.unpack_str() else {
                return Err(fail(format!(
                    "host_executable paths must be strings, not {}",
                    value.get_type()
                )));
            };
            let path = parse_host_path(raw, home.as_deref())?;
            if path.file_name().and_then(|n| n.to_str()) != Some(name) {
                return Err(fail(format!(
                    "host_executable path {raw:?} must have basename {name:?}"
                )));
            }
            if !parsed.contains(&path) {
                parsed.push(path);
            }
        }
        with_builder(|builder| builder.host_executables.insert(name.to_string(), parsed))?;
        Ok(NoneType)
    }

    /// `network_rule(host, protocol, decision, justification=None)`: a host the sandboxed
    /// tree may (allow), may after asking (prompt), or may not (forbidden, deny) reach
    /// through the supervisor's egress proxy (`crate::network`).
    fn network_rule<'v>(
        host: &'v str,
        protocol: &'v str,
        decision: &'v str,
        justification: Option<&'v str>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<NoneType> {
        if !matches!(
            protocol,
            "http" | "https" | "https_connect" | "http-connect" | "socks5_tcp" | "socks5_udp"
        ) {
            return Err(fail(format!(
                "network_rule protocol must be one of http, https, socks5_tcp, socks5_udp (got {protocol:?})"
            )));
        }
        let decision = if decision == "deny" {
            Decision::Forbidden
        } else {
            parse_decision(decision)?
        };
        let justification = parse_justification(justification)?;
        let (host, port) = validate_network_host(host)
            .map_err(|why| fail(format!("network_rule host {why} (got {host:?})")))?;
        let origin = eval
            .call_stack_top_location()
            .map(|span| {
                let at = location_of(Path::new(span.filename()), &span);
                format!("{}:{}", at.file.display(), at.line)
            })
            .unwrap_or_default();
        let rule = crate::network::NetworkRule {
            host,
            port,
            decision,
            protocol: protocol.to_owned(),
            justification,
            origin,
        };
        with_builder(|builder| builder.network_rules.push(rule))?;
        Ok(NoneType)
    }
}

/// `requirements.toml` as Codex reads it for admin rules: `[rules] prefix_rules = [...]`,
/// each `{ pattern = [{ token = "rm" }, { any_of = ["-rf", "-fr"] }], decision =
/// "forbidden", justification = "..." }`. Other tables are Codex's and ignored here.
#[derive(Debug, serde::Deserialize)]
struct RequirementsToml {
    rules: Option<RequirementsRules>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequirementsRules {
    prefix_rules: Vec<toml::Spanned<RequirementsPrefixRule>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequirementsPrefixRule {
    pattern: Vec<RequirementsToken>,
    decision: Option<String>,
    justification: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequirementsToken {
    token: Option<String>,
    any_of: Option<Vec<String>>,
}

/// The 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (to_u32(line), to_u32(column))
}

/// Parses the `[rules]` of a `requirements.toml` into admin rules (decisions `prompt` and
/// `forbidden` only). No `[rules]` table: no rules.
pub(crate) fn parse_requirements(file: &Path, text: &str) -> Result<Vec<PrefixRule>, LoadError> {
    let invalid = |offset: usize, message: String| {
        let (line, column) = line_column(text, offset);
        LoadError::Invalid {
            location: SourceLocation {
                file: file.to_path_buf(),
                line,
                column,
            },
            message,
        }
    };
    let parsed: RequirementsToml = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |span| span.start);
        invalid(offset, e.message().trim().to_string())
    })?;
    let mut rules = Vec::new();
    for entry in parsed.rules.map(|r| r.prefix_rules).unwrap_or_default() {
        let offset = entry.span().start;
        let fail_here = |message: &str| invalid(offset, format!("[rules] prefix_rules: {message}"));
        let rule = entry.into_inner();
        let decision = match rule.decision.as_deref() {
            Some("prompt") => Decision::Prompt,
            Some("forbidden") => Decision::Forbidden,
            Some("allow") => {
                return Err(fail_here(
                    "decision \"allow\" is not allowed in admin rules (prompt or forbidden only)",
                ));
            }
            Some(other) => {
                return Err(fail_here(&format!(
                    "invalid decision {other:?}: expected \"prompt\" or \"forbidden\""
                )));
            }
            None => return Err(fail_here("a decision (prompt or forbidden) is required")),
        };
        if rule
            .justification
            .as_deref()
            .is_some_and(|j| j.trim().is_empty())
        {
            return Err(fail_here("justification cannot be empty"));
        }
        let mut tokens = Vec::with_capacity(rule.pattern.len());
        for token in rule.pattern {
            tokens.push(match (token.token, token.any_of) {
                (Some(single), None) => PatternToken::Single(single),
                (None, Some(alts)) if !alts.is_empty() => PatternToken::Alts(alts),
                (None, Some(_)) => return Err(fail_here("any_of cannot be empty")),
                _ => {
                    return Err(fail_here(
                        "each pattern element has exactly one of `token` or `any_of`",
                    ));
                }
            });
        }
        let Some((first, rest)) = tokens.split_first() else {
            return Err(fail_here("pattern cannot be empty"));
        };
        let (line, _) = line_column(text, offset);
        let origin = RuleOrigin {
            file: file.to_path_buf(),
            line,
            layer: Layer::Admin,
        };
        let written: std::sync::Arc<str> = crate::rule::render_pattern(&tokens).into();
        for program in first.alternatives() {
            rules.push(PrefixRule {
                program: program.clone(),
                rest: rest.to_vec(),
                decision,
                justification: rule.justification.clone(),
                origin: Some(origin.clone()),
                written: written.clone(),
            });
        }
    }
    Ok(rules)
}
